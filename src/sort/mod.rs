//! Sort a folder nobody has labelled yet: a head on the photos' pooled features that learns from
//! each answer, a queue that asks about the photos it is least sure of (kept balanced across
//! the classes it guesses), and, at the end, every photo it is sure enough of sorted into
//! `OUT/CLASS/` ([`journal`], undoable).
//!
//! The photos' features come from the frozen base through the feature cache
//! ([`crate::train::audit::pass_over`]), so a pool is read once; the head ([`head`]) is fitted on
//! the host in a few tenths of a second for 2,000 photos. It learns from the answers and, a
//! little, from the class each answer spreads to the photos like it ([`spread`]). Its
//! confidences are calibrated by a temperature fitted on its out-of-fold guesses of the photos
//! answered so far.

pub mod head;
pub mod journal;
pub mod map;
pub mod pool;
pub mod spread;

use std::path::PathBuf;

use head::{Examples, Head};

/// The confidence above which *Sort the rest* sorts a photo, unless the user says otherwise.
pub const DEFAULT_THRESHOLD: f32 = 0.99;
/// Answers between two fits of the head.
pub const RETRAIN_EVERY: usize = 5;
/// Why there is no guess yet.
pub const NO_GUESS_YET: &str = "it guesses once two classes have an answer";
/// How much a model's guess of a photo counts, as a share of an answer.
pub const PRIOR_WEIGHT: f32 = 0.2;
/// Folds of the out-of-fold guesses that calibrate the head and estimate its accuracy.
const CV_FOLDS: usize = 5;
/// Answers before the head is calibrated and its accuracy estimated.
pub const MIN_TO_CALIBRATE: usize = 20;
/// One question in this many is a *check photo*, drawn at random from the pool rather than
/// the least sure: they keep the head from learning only the hardest photos, and, being a
/// random sample of the pool, their out-of-fold answers measure its accuracy without the
/// queue's bias (once there are [`MIN_CHECKS`]). The temperature is fitted on every answer
/// (BENCHMARKS.md: on the check photos alone it sorted fewer photos, with no error either way).
pub const CHECK_EVERY: usize = 3;
/// Check photos answered before the accuracy shown is measured on them alone.
pub const MIN_CHECKS: usize = 10;

/// What the user said of a photo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Answer {
    /// It is of this class (index into [`Session::classes`]).
    Class(usize),
    /// None of the classes: it is never sorted.
    NoneOfThese,
    /// Asked later.
    Skipped,
}

/// One photo of the pool.
#[derive(Clone, Debug, PartialEq)]
pub struct Photo {
    pub path: PathBuf,
    /// Its path in the pool, `/`-separated.
    pub rel: String,
}

/// How sure the head is, from the photos answered so far.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Estimate {
    /// Out-of-fold accuracy on the answered check photos once there are [`MIN_CHECKS`] (a
    /// random sample of the pool), else on every answered photo (the pool's most typical
    /// photos first, then the queue's hardest: not a sample of the pool either way).
    pub answered_accuracy: f64,
    /// How many check photos it was measured on (0: every answered photo).
    pub checks: usize,
    /// The mean calibrated confidence over the photos not answered: the accuracy expected on
    /// them.
    pub expected_accuracy: f64,
    /// The temperature the confidences are divided by.
    pub temperature: f32,
}

/// Features as the head reads them: each photo the mean of it and its mirror image, scaled to
/// length 1, centred on the pool's mean and scaled to a mean length of 1.
#[derive(Clone, Debug)]
struct Prepare {
    mean: Vec<f32>,
    scale: f32,
}

impl Prepare {
    fn fit(units: &[Vec<f32>]) -> Self {
        let dim = units.first().map_or(0, Vec::len);
        let mut mean = vec![0.0f32; dim];
        for u in units {
            mean.iter_mut().zip(u).for_each(|(m, v)| *m += v);
        }
        let n = units.len().max(1) as f32;
        mean.iter_mut().for_each(|m| *m /= n);
        let spread: f32 = units
            .iter()
            .map(|u| {
                u.iter()
                    .zip(&mean)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f32>()
            })
            .sum::<f32>()
            / n;
        Self {
            mean,
            scale: spread.sqrt().max(1e-6),
        }
    }

    fn apply(&self, unit: &[f32]) -> Vec<f32> {
        let mut x: Vec<f32> = unit
            .iter()
            .zip(&self.mean)
            .map(|(v, m)| (v - m) / self.scale)
            .collect();
        // A vector of the wrong length (a corrupt cache entry) counts as the mean photo.
        x.resize(self.mean.len(), 0.0);
        x
    }
}

/// The gap between the two likeliest classes' probabilities.
fn margin(p: &[f32]) -> f32 {
    let (mut first, mut second) = (0.0f32, 0.0f32);
    for &v in p {
        if v > first {
            second = first;
            first = v;
        } else if v > second {
            second = v;
        }
    }
    first - second
}

/// Each of `k` classes as a target: a probability of 1 for it, 0 for the others.
fn one_hot(k: usize) -> Vec<Vec<f32>> {
    (0..k)
        .map(|c| (0..k).map(|j| f32::from(u8::from(j == c))).collect())
        .collect()
}

/// A photo's view for the head: the mean of the photo and its mirror image, length 1.
fn unit_view(photo: &[f32], mirror: Option<&[f32]>) -> Vec<f32> {
    let p = crate::typical::normalised(photo);
    match mirror {
        Some(m) if m.len() == p.len() => {
            let m = crate::typical::normalised(m);
            crate::typical::normalised(&p.iter().zip(&m).map(|(a, b)| a + b).collect::<Vec<_>>())
        }
        _ => p,
    }
}

/// A sorting session: the pool, the answers so far, and the head's guesses.
#[derive(Clone)]
pub struct Session {
    pub classes: Vec<String>,
    pub photos: Vec<Photo>,
    prepare: Prepare,
    x: Vec<Vec<f32>>,
    /// The log of a model's probabilities for each photo, when the session started from one.
    log_prior: Option<Vec<Vec<f32>>>,
    answers: Vec<Option<Answer>>,
    /// Each step of answers as given (photo, what it replaced), for Undo: one photo, or a group
    /// answered at once on the map.
    history: Vec<Vec<(usize, Option<Answer>)>>,
    head: Head,
    /// Calibrated guesses for every photo.
    probs: Vec<Vec<f32>>,
    estimate: Option<Estimate>,
    /// Whether the head has learnt anything (answers of two classes, or a model's guesses).
    trained: bool,
    /// Photos already sorted into a folder: neither asked about nor sorted again.
    placed: Vec<bool>,
    /// The check photos ([`CHECK_EVERY`]), in the order they are asked.
    checks: Vec<usize>,
    is_check: Vec<bool>,
    /// The pool's neighbour graph, over which answers spread ([`spread`]).
    graph: Option<std::sync::Arc<spread::Graph>>,
    /// The photos asked first ([`spread::representatives`]).
    first: Vec<usize>,
    /// Changes of the answers so far, and how many the head had seen at its last fit.
    changes: u64,
    fitted_changes: u64,
    seed: u64,
}

impl Session {
    /// A session on `photos` with their pooled features (and mirror images', when there are),
    /// and a model's probabilities of `classes` when it starts from a model.
    pub fn new(
        classes: Vec<String>,
        photos: Vec<Photo>,
        (features, mirrors): (&[Vec<f32>], &[Vec<f32>]),
        prior: Option<Vec<Vec<f32>>>,
        seed: u64,
    ) -> Result<Self, String> {
        if classes.len() < 2 {
            return Err("sorting needs at least two classes".into());
        }
        if features.len() != photos.len() || photos.is_empty() {
            return Err(format!(
                "{} photos but {} features",
                photos.len(),
                features.len()
            ));
        }
        let units: Vec<Vec<f32>> = features
            .iter()
            .enumerate()
            .map(|(i, f)| unit_view(f, mirrors.get(i).map(Vec::as_slice)))
            .collect();
        let prepare = Prepare::fit(&units);
        let x: Vec<Vec<f32>> = units.iter().map(|u| prepare.apply(u)).collect();
        let dim = prepare.mean.len();
        let n = photos.len();
        let uniform = vec![1.0 / classes.len() as f32; classes.len()];
        let prior = prior.filter(|p| p.len() == n && p.iter().all(|r| r.len() == classes.len()));
        let mut checks: Vec<usize> = (0..n).collect();
        crate::rng::shuffle(&mut checks, seed ^ 0xc4ec);
        checks.truncate(n.div_ceil(CHECK_EVERY));
        let mut is_check = vec![false; n];
        for &i in &checks {
            is_check[i] = true;
        }
        // The graph only serves a session not started from a model ([`Session::spread_targets`]).
        let graph = match prior {
            None => spread::Graph::build(&x).map(std::sync::Arc::new),
            Some(_) => None,
        };
        let first = match prior {
            None => spread::representatives(&x, seed),
            Some(_) => Vec::new(),
        };
        let mut session = Self {
            head: Head::new(classes.len(), dim),
            probs: prior.clone().unwrap_or_else(|| vec![uniform; n]),
            trained: prior.is_some(),
            classes,
            photos,
            prepare,
            x,
            log_prior: prior.map(|p| {
                p.iter()
                    .map(|r| r.iter().map(|v| v.max(1e-6).ln()).collect())
                    .collect()
            }),
            answers: vec![None; n],
            placed: vec![false; n],
            history: Vec::new(),
            estimate: None,
            checks,
            is_check,
            graph,
            first,
            changes: 0,
            fitted_changes: 0,
            seed,
        };
        if session.log_prior.is_some() {
            session.retrain();
        }
        Ok(session)
    }

    /// The answer given for photo `i`, if any.
    pub fn answer_of(&self, i: usize) -> Option<Answer> {
        self.answers.get(i).copied().flatten()
    }

    /// Answers photo `i` (a second answer replaces the first).
    pub fn answer(&mut self, i: usize, answer: Answer) {
        self.answer_all(&[i], answer);
    }

    /// Gives the photos `group` one answer, as one step for Undo.
    pub fn answer_all(&mut self, group: &[usize], answer: Answer) {
        let mut step = Vec::new();
        for &i in group {
            if let Some(slot) = self.answers.get_mut(i) {
                step.push((i, *slot));
                *slot = Some(answer);
            }
        }
        if !step.is_empty() {
            self.history.push(step);
            self.changes += 1;
        }
    }

    /// Takes back the last step of answers; the first photo it was about.
    pub fn undo(&mut self) -> Option<usize> {
        let step = self.history.pop()?;
        self.changes += 1;
        for &(i, before) in step.iter().rev() {
            self.answers[i] = before;
        }
        step.first().map(|s| s.0)
    }

    /// The last `n` answers, the latest first.
    pub fn recent(&self, n: usize) -> Vec<(usize, Answer)> {
        let mut seen = std::collections::HashSet::new();
        self.history
            .iter()
            .rev()
            .flat_map(|step| step.iter().rev())
            .filter(|(i, _)| seen.insert(*i))
            .filter_map(|&(i, _)| Some((i, self.answer_of(i)?)))
            .take(n)
            .collect()
    }

    /// Each photo as a point of a map where photos alike are near each other ([`map`]).
    pub fn map(&self) -> Vec<[f32; 2]> {
        map::layout(&self.x, self.seed)
    }

    /// How many photos are sorted already.
    pub fn placed_count(&self) -> usize {
        self.placed.iter().filter(|&&p| p).count()
    }

    /// Whether the photo is sorted already.
    pub fn is_placed(&self, i: usize) -> bool {
        self.placed.get(i).copied().unwrap_or(false)
    }

    /// How many photos have an answer that is not a skip.
    pub fn answered(&self) -> usize {
        let real = |a: &&Option<Answer>| matches!(a, Some(Answer::Class(_) | Answer::NoneOfThese));
        self.answers.iter().filter(real).count()
    }

    /// The photos answered as each class.
    pub fn counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for a in self.answers.iter().flatten() {
            if let Answer::Class(c) = a {
                counts[*c] += 1;
            }
        }
        counts
    }

    /// The head's guess for photo `i`: its likeliest class and calibrated confidence; `None`
    /// before it has learnt anything.
    pub fn guess(&self, i: usize) -> Option<(usize, f32)> {
        if !self.trained {
            return None;
        }
        let p = self.probs.get(i)?;
        let c = crate::metrics::argmax(p);
        Some((c, p[c]))
    }

    /// Whether the head should learn again, `since` answers after its last fit: every
    /// [`RETRAIN_EVERY`] answers, and at once when it has learnt nothing yet and can.
    pub fn needs_fit(&self, since: usize) -> bool {
        since >= RETRAIN_EVERY || (since > 0 && !self.trained && self.learns_from(&self.labelled()))
    }

    /// Takes the fit of `fitted` (a copy of this session refitted on a worker): its head,
    /// guesses and estimates. The answers given meanwhile stay; the next fit learns them. A
    /// fit of another pool (one started over) is ignored.
    pub fn adopt(&mut self, fitted: Session) {
        if fitted.photos != self.photos || fitted.classes != self.classes {
            return;
        }
        self.head = fitted.head;
        self.probs = fitted.probs;
        self.estimate = fitted.estimate;
        self.trained = fitted.trained;
        self.fitted_changes = fitted.fitted_changes;
    }

    /// Marks the photos at `paths` as sorted (`true`) or back in the pool (`false`, after an
    /// undo).
    pub fn set_placed(&mut self, paths: &[PathBuf], placed: bool) {
        let wanted: std::collections::HashSet<&PathBuf> = paths.iter().collect();
        for (i, photo) in self.photos.iter().enumerate() {
            if wanted.contains(&photo.path) {
                self.placed[i] = placed;
            }
        }
    }

    /// Where the session stands, in words: answers so far and how right the head is.
    pub fn status(&self) -> String {
        let answered = crate::words::count(self.answered(), "answer", "answers");
        match self.estimate {
            Some(e) => format!(
                "{answered} · {:.0}% right on {} (by heads that did not learn them) · about \
                 {:.0}% expected on the rest",
                100.0 * e.answered_accuracy,
                match e.checks {
                    0 => "the photos answered so far".to_owned(),
                    n => format!("{n} photos asked at random"),
                },
                100.0 * e.expected_accuracy
            ),
            None if self.trained => format!(
                "{answered} · how right it is shows once {MIN_TO_CALIBRATE} photos are answered"
            ),
            None => format!("{answered} · {NO_GUESS_YET}"),
        }
    }

    /// How many photos *Sort the rest* would sort into each class at `threshold`.
    pub fn sorted_counts(&self, threshold: f32) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for (_, c) in self.sorted(threshold) {
            counts[c] += 1;
        }
        counts
    }

    /// The accuracy estimates, once enough photos are answered.
    pub fn estimate(&self) -> Option<Estimate> {
        self.estimate
    }

    fn labelled(&self) -> Vec<(usize, usize)> {
        let of = |(i, a): (usize, &Option<Answer>)| match a {
            Some(Answer::Class(c)) => Some((i, *c)),
            _ => None,
        };
        self.answers.iter().enumerate().filter_map(of).collect()
    }

    /// Fits a head on the answers, leaving out the photos `held` (whose answers it must not
    /// see); when the session started from a model, the head learns corrections to the model's
    /// guesses (added to its log-probabilities), so that without answers it says what the model
    /// says.
    fn fit(&self, start: &Head, held: &std::collections::HashSet<usize>) -> Head {
        let labelled: Vec<(usize, usize)> = self
            .labelled()
            .into_iter()
            .filter(|(i, _)| !held.contains(i))
            .collect();
        let one_hot = one_hot(self.classes.len());
        let spread = self.spread_targets(held, &labelled);
        let mut features: Vec<&[f32]> = labelled.iter().map(|&(i, _)| &self.x[i][..]).collect();
        let mut targets: Vec<&[f32]> = labelled.iter().map(|&(_, c)| &one_hot[c][..]).collect();
        let mut weights = vec![1.0; labelled.len()];
        let mut photos: Vec<usize> = labelled.iter().map(|l| l.0).collect();
        for &(i, c) in &spread {
            features.push(&self.x[i]);
            targets.push(&one_hot[c]);
            weights.push(spread::WEIGHT);
            photos.push(i);
        }
        let offsets: Option<Vec<&[f32]>> = self
            .log_prior
            .as_ref()
            .map(|o| photos.iter().map(|&i| &o[i][..]).collect());
        let mut head = start.clone();
        head.fit(&Examples {
            features: &features,
            targets: &targets,
            weights: &weights,
            offsets: offsets.as_deref(),
        });
        head
    }

    /// The photos not answered (nor `held`) that the head learns from beside the answers
    /// `labelled`, each with a class: the class the answers spread to it over the pool's graph
    /// ([`spread`]), where a head fitted on the answers alone guesses that class too (where
    /// the two disagree, the photo's nearest photos are often of another class: on a pool at
    /// 112 px it taught those mistakes), and where no photo answered "none of these" is
    /// nearer. None before two classes have answers, above [`spread::SPREAD_MAX`] photos, or
    /// when the session started from a model (it has no graph: the model's guesses already
    /// say what the pool's photos are).
    fn spread_targets(
        &self,
        held: &std::collections::HashSet<usize>,
        labelled: &[(usize, usize)],
    ) -> Vec<(usize, usize)> {
        let Some(graph) = self.graph.as_deref() else {
            return Vec::new();
        };
        if !self.learns_from(labelled) {
            return Vec::new();
        }
        let k = self.classes.len();
        let mut alone = Head::new(k, self.prepare.mean.len());
        let features: Vec<&[f32]> = labelled.iter().map(|&(i, _)| &self.x[i][..]).collect();
        let one_hot = one_hot(k);
        let targets: Vec<&[f32]> = labelled.iter().map(|&(_, c)| &one_hot[c][..]).collect();
        alone.fit(&Examples {
            features: &features,
            targets: &targets,
            weights: &vec![1.0; labelled.len()],
            offsets: None,
        });
        // Photos answered "none of these" spread too, as one more class: a photo they reach
        // first is taught nothing.
        let mut seeds = labelled.to_vec();
        seeds.extend(
            (0..self.answers.len())
                .filter(|&i| self.answers[i] == Some(Answer::NoneOfThese) && !held.contains(&i))
                .map(|i| (i, k)),
        );
        graph
            .spread(&seeds, k + 1)
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !held.contains(i))
            .filter(|(i, _)| matches!(self.answers[*i], None | Some(Answer::Skipped)))
            .filter_map(|(i, s)| Some((i, crate::metrics::argmax(&s?))))
            .filter(|&(i, c)| {
                c < k && crate::metrics::argmax(&alone.probabilities(&self.x[i])) == c
            })
            .collect()
    }

    /// Whether a head can learn from `labelled` alone: answers of two classes at least.
    fn learns_from(&self, labelled: &[(usize, usize)]) -> bool {
        let mut classes: Vec<usize> = labelled.iter().map(|l| l.1).collect();
        classes.sort_unstable();
        classes.dedup();
        classes.len() >= 2
    }

    /// Photo `i`'s probabilities from `head` (before calibration).
    fn raw(&self, head: &Head, i: usize) -> Vec<f32> {
        let offset = self.log_prior.as_ref().map(|o| &o[i][..]);
        head.probabilities_with(&self.x[i], offset)
    }

    /// Whether the head has learnt every answer given so far (a fit from its own weights
    /// would move them on, and change what it is sure of).
    pub fn is_fitted(&self) -> bool {
        self.trained && self.fitted_changes == self.changes
    }

    /// Fits the head again on every answer so far, calibrates it on its out-of-fold guesses
    /// of the answered photos, and re-guesses every photo.
    pub fn retrain(&mut self) {
        let labelled = self.labelled();
        if !self.learns_from(&labelled) && self.log_prior.is_none() {
            return;
        }
        self.fitted_changes = self.changes;
        let none = std::collections::HashSet::new();
        self.head = self.fit(&self.head, &none);
        self.trained = true;
        let (temperature, answered_accuracy, checks) = self.out_of_fold(&labelled);
        let raw: Vec<Vec<f32>> = (0..self.x.len()).map(|i| self.raw(&self.head, i)).collect();
        self.probs = raw
            .iter()
            .map(|p| crate::calibration::calibrate(p, temperature.unwrap_or(1.0)))
            .collect();
        self.estimate = temperature.zip(answered_accuracy).map(|(t, acc)| {
            let rest: Vec<f32> = (0..self.probs.len())
                .filter(|&i| self.answers[i].is_none())
                .map(|i| self.probs[i].iter().copied().fold(0.0, f32::max))
                .collect();
            Estimate {
                answered_accuracy: acc,
                checks,
                expected_accuracy: if rest.is_empty() {
                    acc
                } else {
                    rest.iter().map(|&p| f64::from(p)).sum::<f64>() / rest.len() as f64
                },
                temperature: t,
            }
        });
    }

    /// The temperature fitted on the answered photos' out-of-fold guesses, and their accuracy;
    /// `None` under [`MIN_TO_CALIBRATE`] answers.
    fn out_of_fold(&self, labelled: &[(usize, usize)]) -> (Option<f32>, Option<f64>, usize) {
        if labelled.len() < MIN_TO_CALIBRATE {
            return (None, None, 0);
        }
        let mut order: Vec<usize> = (0..labelled.len()).collect();
        crate::rng::shuffle(&mut order, self.seed);
        let (mut probs, mut labels, mut held_photos) = (Vec::new(), Vec::new(), Vec::new());
        let fresh = Head::new(self.classes.len(), self.prepare.mean.len());
        for fold in 0..CV_FOLDS {
            let held: std::collections::HashSet<usize> = order
                .iter()
                .skip(fold)
                .step_by(CV_FOLDS)
                .map(|&j| labelled[j].0)
                .collect();
            let head = self.fit(&fresh, &held);
            for &(i, c) in labelled.iter().filter(|(i, _)| held.contains(i)) {
                probs.push(self.raw(&head, i));
                labels.push(c);
                held_photos.push(i);
            }
        }
        // The accuracy on the check photos alone, once there are enough: a random sample of
        // the pool, where the queue's answers are its hardest photos.
        let checked: Vec<usize> = (0..held_photos.len())
            .filter(|&j| self.is_check[held_photos[j]])
            .collect();
        let t = crate::calibration::fit_temperature(&probs, &labels);
        let on_checks = checked.len() >= MIN_CHECKS;
        if on_checks {
            probs = checked.iter().map(|&j| probs[j].clone()).collect();
            labels = checked.iter().map(|&j| labels[j]).collect();
        }
        let right = probs
            .iter()
            .zip(&labels)
            .filter(|(p, c)| crate::metrics::argmax(p) == **c)
            .count();
        let checks = if on_checks { labels.len() } else { 0 };
        (
            Some(t),
            Some(right as f64 / labels.len().max(1) as f64),
            checks,
        )
    }

    /// The photos to ask about, in order: first the pool's [`spread::FIRST_QUESTIONS`] most
    /// typical photos (unless the session started from a model); before the head has learnt
    /// anything, the rest in a seeded random order; then the least sure first (the smallest margin between the two
    /// likeliest classes), with every [`CHECK_EVERY`]th question a check photo. Skipped photos come last; answered
    /// ones not at all.
    pub fn queue(&self) -> Vec<usize> {
        let open = |i: &usize| self.answers[*i].is_none() && !self.placed[*i];
        let skipped: Vec<usize> = (0..self.photos.len())
            .filter(|&i| self.answers[i] == Some(Answer::Skipped) && !self.placed[i])
            .collect();
        let mut order = if self.trained {
            let unsure = self.least_sure(|i| open(&i) && !self.is_check[i]);
            let mut checks = self.checks.iter().copied().filter(open);
            let mut unsure = unsure.into_iter();
            let mut order = Vec::new();
            // Every third question asked, counting those already answered: the photo asked
            // first is a check photo on every third answer.
            let asked = self.history.len();
            loop {
                let check_turn = (asked + order.len() + 1).is_multiple_of(CHECK_EVERY);
                let next = if check_turn {
                    checks.next().or_else(|| unsure.next())
                } else {
                    unsure.next().or_else(|| checks.next())
                };
                match next {
                    Some(i) => order.push(i),
                    None => break,
                }
            }
            order
        } else {
            let mut order: Vec<usize> = (0..self.photos.len()).filter(open).collect();
            crate::rng::shuffle(&mut order, self.seed);
            order
        };
        // The first questions, while fewer answers than there are of them have come.
        if self.answered() < spread::FIRST_QUESTIONS {
            let first: Vec<usize> = self.first.iter().copied().filter(open).collect();
            order.retain(|i| !first.contains(i));
            order.splice(0..0, first);
        }
        order.extend(skipped);
        order
    }

    /// The photos `keep` keeps, least sure first: the smallest margin between their two
    /// likeliest classes. (Not each guessed class in turn: on the benchmark's pools that asked
    /// a small class's few photos a third of the time and sorted fewer photos in the end.)
    fn least_sure(&self, keep: impl Fn(usize) -> bool) -> Vec<usize> {
        let mut order: Vec<(f32, usize)> = (0..self.photos.len())
            .filter(|&i| keep(i))
            .map(|i| (margin(&self.probs[i]), i))
            .collect();
        order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        order.into_iter().map(|x| x.1).collect()
    }

    /// The photos *Sort the rest* would sort, each with its class: every photo answered with a
    /// class, and every photo not answered whose calibrated confidence is at least `threshold`
    /// (none already sorted).
    pub fn sorted(&self, threshold: f32) -> Vec<(usize, usize)> {
        (0..self.photos.len())
            .filter(|&i| !self.placed[i])
            .filter_map(|i| match self.answers[i] {
                Some(Answer::Class(c)) => Some((i, c)),
                Some(Answer::NoneOfThese) => None,
                None | Some(Answer::Skipped) => {
                    let (c, p) = self.guess(i)?;
                    (p >= threshold).then_some((i, c))
                }
            })
            .collect()
    }

    /// The head's accuracy on other photos (their pooled features, mirror images' and labels).
    pub fn accuracy_on(
        &self,
        features: &[Vec<f32>],
        mirrors: &[Vec<f32>],
        labels: &[usize],
    ) -> f64 {
        let right = features
            .iter()
            .enumerate()
            .zip(labels)
            .filter(|((i, f), label)| {
                let x = self
                    .prepare
                    .apply(&unit_view(f, mirrors.get(*i).map(Vec::as_slice)));
                crate::metrics::argmax(&self.head.probabilities(&x)) == **label
            })
            .count();
        right as f64 / labels.len().max(1) as f64
    }
}

/// Which photo the simulation answers next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Order {
    /// The queue's order.
    Queue,
    /// A seeded random order (the baseline).
    Random,
}

/// One point of a simulation's curve.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Point {
    pub answers: usize,
    /// Accuracy on the photos scored on, when there are.
    pub accuracy: Option<f64>,
    pub estimate: Option<Estimate>,
    /// Accuracy of the guesses on the pool's photos not answered (by the oracle).
    pub pool_accuracy: Option<f64>,
    /// Seconds the fit took.
    pub fit_secs: f64,
}

/// How many of the photos not answered that have a class in `truth` the head guesses right.
fn pool_accuracy(session: &Session, truth: &[Option<usize>]) -> Option<f64> {
    let known: Vec<(usize, usize)> = (0..session.photos.len())
        .filter(|&i| session.answers[i].is_none())
        .filter_map(|i| Some((i, truth.get(i).copied().flatten()?)))
        .collect();
    if known.is_empty() || !session.trained {
        return None;
    }
    let right = known
        .iter()
        .filter(|&&(i, c)| session.guess(i).map(|g| g.0) == Some(c))
        .count();
    Some(right as f64 / known.len() as f64)
}

/// Answers `answers` photos of `session` from `truth` (each photo's class; `None`: none of
/// these) in `order`, fitting the head every `every` answers and scoring it with `score`.
pub fn simulate(
    session: &mut Session,
    truth: &[Option<usize>],
    (answers, every, order): (usize, usize, Order),
    score: &dyn Fn(&Session) -> Option<f64>,
) -> Vec<Point> {
    let mut random: Vec<usize> = (0..session.photos.len()).collect();
    crate::rng::shuffle(&mut random, session.seed ^ 0x5eed);
    let mut curve = Vec::new();
    let mut given = 0;
    loop {
        if given % every.max(1) == 0 || given == answers {
            let started = std::time::Instant::now();
            session.retrain();
            curve.push(Point {
                answers: given,
                accuracy: score(session),
                estimate: session.estimate(),
                pool_accuracy: pool_accuracy(session, truth),
                fit_secs: started.elapsed().as_secs_f64(),
            });
        }
        if given >= answers {
            break;
        }
        let next = match order {
            Order::Queue => session.queue().first().copied(),
            Order::Random => random
                .iter()
                .copied()
                .find(|&i| session.answers[i].is_none()),
        };
        let Some(i) = next else { break };
        let answer = truth
            .get(i)
            .copied()
            .flatten()
            .map_or(Answer::NoneOfThese, Answer::Class);
        session.answer(i, answer);
        given += 1;
    }
    curve
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// 60 photos in three clusters of 8-d features; photo `i` is of class `i % 3`.
    fn pool() -> (Vec<Photo>, Vec<Vec<f32>>) {
        let mut rng = SplitMix64(7);
        let features = (0..60)
            .map(|i| {
                (0..8)
                    .map(|d| f32::from(u8::from(d == i % 3)) * 2.0 + rng.next_f32())
                    .collect()
            })
            .collect();
        let photos = (0..60)
            .map(|i| Photo {
                path: PathBuf::from(format!("p{i}.jpg")),
                rel: format!("p{i}.jpg"),
            })
            .collect();
        (photos, features)
    }

    fn classes() -> Vec<String> {
        ["a", "b", "c"].map(String::from).to_vec()
    }

    #[test]
    fn answers_teach_the_head_and_the_queue_skips_what_is_answered() {
        let (photos, features) = pool();
        let mut s = Session::new(classes(), photos, (&features, &[]), None, 1).unwrap();
        assert_eq!(s.guess(0), None, "nothing learnt yet");
        let first = s.queue();
        assert_eq!(first.len(), 60);
        // The first questions are the pool's most typical photos, one of each cluster.
        assert_eq!(first[..spread::FIRST_QUESTIONS], s.first[..]);
        for &i in &first[..10] {
            s.answer(i, Answer::Class(i % 3));
        }
        s.answer(first[10], Answer::Skipped);
        s.retrain();
        let queue = s.queue();
        assert_eq!(queue.len(), 50);
        assert_eq!(queue.last(), Some(&first[10]), "a skipped photo comes last");
        assert!(!queue[..49].iter().any(|i| first[..11].contains(i)));
        // The least sure first, but for every third question, a check photo.
        let margins: Vec<f32> = queue[..49]
            .iter()
            .filter(|&&i| !s.is_check[i])
            .map(|&i| margin(&s.probs[i]))
            .collect();
        assert!(margins.windows(2).all(|w| w[0] <= w[1]), "{margins:?}");
        let checks: Vec<bool> = queue[..9].iter().map(|&i| s.is_check[i]).collect();
        assert_eq!(checks.iter().filter(|&&c| c).count(), 3, "{checks:?}");
        // 11 questions answered so far: the 1st, 4th and 7th next are the 12th, 15th, 18th.
        assert!(checks[0] && checks[3] && checks[6], "{checks:?}");
        // Answering the queue's first photo each time asks a check photo every third time.
        let mut sim = s.clone();
        let mut asked_checks = 0;
        for _ in 0..30 {
            let i = sim.queue()[0];
            asked_checks += usize::from(sim.is_check[i]);
            sim.answer(i, Answer::Class(i % 3));
        }
        assert_eq!(asked_checks, 10);
        for i in 0..60 {
            assert_eq!(s.guess(i).unwrap().0, i % 3, "photo {i}");
        }
        // A group answered at once is undone as one step.
        s.answer_all(&[first[20], first[21], first[22]], Answer::Class(0));
        assert_eq!(s.answered(), 13);
        s.undo();
        assert_eq!(s.answered(), 10);
        // Undo takes the last answer back.
        assert_eq!(s.undo(), Some(first[10]));
        assert_eq!(s.answer_of(first[10]), None);
        assert_eq!(s.answered(), 10);
        assert_eq!(
            s.recent(2),
            [
                (first[9], Answer::Class(first[9] % 3)),
                (first[8], Answer::Class(first[8] % 3))
            ]
        );
    }

    #[test]
    fn a_simulated_sort_learns_every_class_and_sorts_only_what_it_is_sure_of() {
        let (photos, features) = pool();
        let truth: Vec<Option<usize>> = (0..60).map(|i| Some(i % 3)).collect();
        let mut s = Session::new(classes(), photos, (&features, &[]), None, 2).unwrap();
        let score = |s: &Session| {
            Some(s.accuracy_on(&features, &[], &(0..60).map(|i| i % 3).collect::<Vec<_>>()))
        };
        let curve = simulate(&mut s, &truth, (30, 10, Order::Queue), &score);
        assert_eq!(curve.len(), 4);
        assert_eq!(curve.last().unwrap().accuracy, Some(1.0));
        let estimate = curve.last().unwrap().estimate.unwrap();
        assert!(estimate.answered_accuracy > 0.9, "{estimate:?}");
        let sorted = s.sorted(0.9);
        assert!(sorted.iter().all(|&(i, c)| c == i % 3));
        assert!(sorted.len() >= 30, "{}", sorted.len());
        // Nothing is sorted at a threshold no confidence reaches, but the answered photos.
        assert_eq!(s.sorted(1.01).len(), 30);
    }

    #[test]
    fn a_models_guesses_start_the_head_and_answers_correct_them() {
        let (photos, features) = pool();
        // A model that confuses b and c.
        let prior: Vec<Vec<f32>> = (0..60)
            .map(|i| match i % 3 {
                0 => vec![0.9, 0.05, 0.05],
                _ => vec![0.05, 0.9, 0.05],
            })
            .collect();
        let mut s = Session::new(classes(), photos, (&features, &[]), Some(prior), 3).unwrap();
        assert_eq!(s.guess(2).unwrap().0, 1, "the model's guess");
        // Eight c photos answered (the model said b), and four a and b each (as it said).
        for i in (2..60).step_by(3).take(8) {
            s.answer(i, Answer::Class(2));
        }
        for i in 0..4 {
            s.answer(3 * i, Answer::Class(0));
            s.answer(3 * i + 1, Answer::Class(1));
        }
        s.retrain();
        for i in 30..60 {
            assert_eq!(s.guess(i).unwrap().0, i % 3, "photo {i}: {:?}", s.probs[i]);
        }
    }
}
