//! The two-layer heads' training step on cached features (the light and the pooled head), by
//! hand on the CPU.
//!
//! With the base frozen and its output cached, a step of the light head (25088 → 256 → classes)
//! is two matrix products over the 6.4 M weights of its first layer and an Adam pass over them.
//! Through Burn's autodiff on the CPU the same step also builds a graph, allocates and zeroes a
//! fresh output for every operation and copies each large product into an aligned buffer: about
//! 10 ms a step against 6 ms of products and optimizer (profile in BENCHMARKS.md). Here the
//! forward and backward passes are written out (the products through `gemm`), and the gradients
//! go to the run's own optimizer, so the optimizer state and checkpoints are the ones the Burn
//! path keeps, and either path can resume the other's checkpoint.
//!
//! The arithmetic is the Burn path's: the same dropout masks drawn from the same generator in the
//! same order, the same loss (mean negative log-softmax of the true class), ReLU's gradient where
//! its input is positive. The pooled head's step first averages each channel's cells, as its
//! forward pass does (nothing below the first layer learns, so no gradient goes through the
//! mean). A test pins losses and weights to the Burn path's over several steps, for both heads.

use burn::module::Param;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};

use rayon::prelude::*;

use crate::model::Vgg16;
use crate::model::host::strided_matmul;
use crate::model::vgg::{dropout_mask, global_average};
use crate::rng::SplitMix64;

/// What one step reports.
pub struct StepOutput {
    /// The batch's mean loss.
    pub loss: f64,
    /// The logits, `[batch, classes]` row-major, before the step's update.
    pub logits: Vec<f32>,
}

/// `dst[m×n] = lhs[m×k] · rhs[k×n]`, each given with its row and column strides.
///
/// # Panics
/// When a slice is too short for its shape and strides.
#[allow(clippy::too_many_arguments)]
fn matmul(
    [m, n, k]: [usize; 3],
    dst: &mut [f32],
    (dst_rs, dst_cs): (usize, usize),
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    let last = |rs: usize, cs: usize, rows: usize, cols: usize| {
        (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs + 1
    };
    assert!(dst.len() >= last(dst_rs, dst_cs, m, n), "dst too short");
    assert!(lhs.len() >= last(lhs_rs, lhs_cs, m, k), "lhs too short");
    assert!(rhs.len() >= last(rhs_rs, rhs_cs, k, n), "rhs too short");
    // SAFETY: the assertions above keep every element the strides address inside its slice, and
    // `dst` is borrowed mutably, so no one else touches it during the call.
    unsafe {
        strided_matmul(
            [m, n, k],
            (dst.as_mut_ptr(), dst_rs, dst_cs),
            (lhs.as_ptr(), lhs_rs, lhs_cs),
            (rhs.as_ptr(), rhs_rs, rhs_cs),
            gemm::Parallelism::Rayon(rayon::current_num_threads()),
        );
    }
}

/// The nonzero values of a batch of features, by feature: the pooled ImageNet features of
/// photos are mostly zero (86% of the Dogs vs. Cats ones: the ReLUs), so both products with the
/// first layer skip most of their work, and each of its 25088 rows is read or written once.
struct Columns {
    /// Feature `i`'s entries are `starts[i]..starts[i + 1]` of `rows` and `values`.
    starts: Vec<usize>,
    rows: Vec<usize>,
    values: Vec<f32>,
    batch: usize,
}

/// Above this share of nonzero values, the dense products are faster.
const SPARSE_ENOUGH: f64 = 0.35;

/// Features per parallel task.
const BLOCK: usize = 512;

impl Columns {
    /// `x` (`[batch, features]` row-major) by feature, when sparse enough to be worth it. Two
    /// passes in `x`'s own order (reading it by feature jumps 100 KB an element).
    fn of_sparse(x: &[f32], batch: usize, features: usize) -> Option<Self> {
        let mut counts = vec![0usize; features + 1];
        for row in x.chunks_exact(features) {
            for (count, v) in counts.iter_mut().zip(row) {
                *count += usize::from(*v != 0.0);
            }
        }
        let nonzero: usize = counts.iter().sum();
        if nonzero as f64 > SPARSE_ENOUGH * x.len() as f64 {
            return None;
        }
        // Counts become starts (exclusive prefix sums), then fill cursors.
        let mut starts = Vec::with_capacity(features + 1);
        let mut total = 0;
        for count in &counts {
            starts.push(total);
            total += count;
        }
        let mut cursor = starts.clone();
        let mut rows = vec![0usize; nonzero];
        let mut values = vec![0.0f32; nonzero];
        for (b, row) in x.chunks_exact(features).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    let at = cursor[i];
                    rows[at] = b;
                    values[at] = v;
                    cursor[i] = at + 1;
                }
            }
        }
        Some(Self {
            starts,
            rows,
            values,
            batch,
        })
    }

    #[inline(always)]
    fn entries(&self, i: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
        let range = self.starts[i]..self.starts[i + 1];
        self.rows[range.clone()]
            .iter()
            .copied()
            .zip(self.values[range].iter().copied())
    }

    /// `x · w` for `w` `[features, width]` row-major: `[batch, width]`.
    fn times(&self, w: &[f32], width: usize) -> Vec<f32> {
        let features = self.starts.len() - 1;
        let out_len = self.batch * width;
        (0..features.div_ceil(BLOCK))
            .into_par_iter()
            .map(|block| {
                let mut out = vec![0.0f32; out_len];
                let range = block * BLOCK..((block + 1) * BLOCK).min(features);
                simd::times_block(self, w, width, &mut out, range);
                out
            })
            .reduce(
                || vec![0.0f32; out_len],
                |mut a, b| {
                    for (a, b) in a.iter_mut().zip(&b) {
                        *a += b;
                    }
                    a
                },
            )
    }

    /// `xᵀ · d` for `d` `[batch, width]` row-major, added into `out` (`[features, width]`).
    fn transposed_times(&self, d: &[f32], width: usize, out: &mut [f32]) {
        out.par_chunks_mut(BLOCK * width)
            .enumerate()
            .for_each(|(block, rows)| simd::transposed_block(self, d, width, rows, block * BLOCK));
    }
}

/// The two sparse kernels, compiled for AVX-512 where the CPU has it (chosen at run time; the
/// release build targets plain x86-64, whose 4-wide SSE made them slower than dense `gemm`).
mod simd {
    use super::Columns;

    /// Rows of the first layer fetched ahead of their use: each is used by a few entries only,
    /// too few for the out-of-order core to hide the wait for memory.
    const AHEAD: usize = 4;

    #[inline(always)]
    fn prefetch_row(w: &[f32], start: usize, width: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            let row = &w[start..start + width];
            for line in row.chunks(16) {
                // SAFETY: a prefetch is a hint; the address is inside `w`.
                unsafe {
                    std::arch::x86_64::_mm_prefetch(
                        line.as_ptr().cast::<i8>(),
                        std::arch::x86_64::_MM_HINT_T0,
                    );
                }
            }
        }
    }

    /// `y += v · x`.
    #[inline(always)]
    fn axpy(v: f32, x: &[f32], y: &mut [f32]) {
        for (y, x) in y.iter_mut().zip(x) {
            *y += v * x;
        }
    }

    #[inline(always)]
    fn times_block_any(
        c: &Columns,
        w: &[f32],
        width: usize,
        out: &mut [f32],
        features: std::ops::Range<usize>,
    ) {
        let end = features.end;
        for i in features {
            prefetch_row(w, (i + AHEAD).min(end.max(1) - 1) * width, width);
            let row = &w[i * width..(i + 1) * width];
            for (b, v) in c.entries(i) {
                axpy(v, row, &mut out[b * width..(b + 1) * width]);
            }
        }
    }

    /// Each row is summed in a scratch row that stays in L1 and then written once, rather than
    /// read and written back for every entry.
    #[inline(always)]
    fn transposed_block_any(c: &Columns, d: &[f32], width: usize, rows: &mut [f32], first: usize) {
        let mut acc = vec![0.0f32; width];
        for (r, row) in rows.chunks_exact_mut(width).enumerate() {
            acc.fill(0.0);
            for (b, v) in c.entries(first + r) {
                axpy(v, &d[b * width..(b + 1) * width], &mut acc);
            }
            row.copy_from_slice(&acc);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn times_block_wide(
        c: &Columns,
        w: &[f32],
        width: usize,
        out: &mut [f32],
        features: std::ops::Range<usize>,
    ) {
        times_block_any(c, w, width, out, features);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn transposed_block_wide(c: &Columns, d: &[f32], width: usize, rows: &mut [f32], first: usize) {
        transposed_block_any(c, d, width, rows, first);
    }

    fn wide() -> bool {
        #[cfg(target_arch = "x86_64")]
        return std::arch::is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// `out[b] += Σ_{i ∈ features} x[b, i] · w[i]`.
    pub(super) fn times_block(
        c: &Columns,
        w: &[f32],
        width: usize,
        out: &mut [f32],
        features: std::ops::Range<usize>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if wide() {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { times_block_wide(c, w, width, out, features) };
        }
        times_block_any(c, w, width, out, features);
    }

    /// `rows[r] += Σ_b x[b, first + r] · d[b]`.
    pub(super) fn transposed_block(
        c: &Columns,
        d: &[f32],
        width: usize,
        rows: &mut [f32],
        first: usize,
    ) {
        #[cfg(target_arch = "x86_64")]
        if wide() {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { transposed_block_wide(c, d, width, rows, first) };
        }
        transposed_block_any(c, d, width, rows, first);
    }
}

/// f32 values in a buffer Burn's tensors take over as they are. `TensorData::new` copies a
/// `Vec<f32>` into a buffer aligned for any element type (16 bytes), and `TensorData::zeros`
/// pushes its zeros one at a time before that copy: for the 25 MB gradient of the first layer,
/// a tenth of a step. A `Vec<u128>` already has that alignment.
enum AlignedF32 {
    Wide(Vec<u128>, usize),
    Plain(Vec<f32>),
}

impl AlignedF32 {
    fn zeros(len: usize) -> Self {
        if len.is_multiple_of(4) {
            Self::Wide(vec![0u128; len / 4], len)
        } else {
            Self::Plain(vec![0.0; len])
        }
    }

    fn as_mut_slice(&mut self) -> &mut [f32] {
        match self {
            // SAFETY: the Vec holds `len / 4` u128s, that is `len` f32s of initialised (zero)
            // bytes, aligned for u128 and so for f32; every bit pattern is a valid f32.
            Self::Wide(v, len) => unsafe {
                std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<f32>(), *len)
            },
            Self::Plain(v) => v,
        }
    }

    fn into_data(self, shape: [usize; 2]) -> TensorData {
        match self {
            Self::Wide(v, _) => TensorData::from_bytes(
                burn::tensor::Bytes::from_elems(v),
                shape,
                burn::tensor::DType::F32,
            ),
            Self::Plain(v) => TensorData::new(v, shape),
        }
    }
}

/// A parameter taken out of the model: its id, values and what puts it back.
struct Taken<const D: usize> {
    id: burn::module::ParamId,
    data: TensorData,
    mapper: burn::module::ParamMapper<Tensor<D>>,
    require_grad: bool,
}

impl<const D: usize> Taken<D> {
    /// Takes `param`'s values without a copy (the model gives up its buffer) and leaves an
    /// empty placeholder until [`Taken::put_back`].
    fn take(param: &mut Param<Tensor<D>>) -> Self {
        let placeholder = Param::from_tensor(Tensor::<D>::empty([0; D], &Device::flex()));
        let (id, tensor, mapper) = std::mem::replace(param, placeholder).consume();
        let require_grad = tensor.is_require_grad();
        let data = tensor.inner().into_data().convert::<f32>();
        Self {
            id,
            data,
            mapper,
            require_grad,
        }
    }

    fn values(&self) -> &[f32] {
        self.data.as_slice::<f32>().expect("f32 parameter")
    }

    /// Returns the values to the model (autodiff enabled, as the optimizer expects).
    fn put_back(self, param: &mut Param<Tensor<D>>) {
        let mut tensor = Tensor::<D>::from_data(self.data, &Device::flex()).autodiff();
        if self.require_grad {
            tensor = tensor.require_grad();
        }
        *param = Param::from_mapped_value(self.id, tensor, self.mapper);
    }
}

/// Whether `model`'s head is a two-layer head (light or pooled) this step handles: exactly two dense layers with
/// biases (the caller sees to the CPU). `VGGTUNE_HOST_HEAD=off` hands every step to Burn's
/// autodiff instead, for comparisons.
pub fn handles(model: &Vgg16) -> bool {
    model.classifier.len() == 2
        && model.classifier.iter().all(|l| l.bias.is_some())
        && crate::tuning::current().host_head
}

/// z1 = x·W1 + b1 for `batch` rows of `x`: sparse rows (ReLU outputs) through the column
/// kernels, dense ones through `gemm`.
fn first_layer(
    x: &[f32],
    batch: usize,
    sparse: Option<&Columns>,
    w1: &Taken<2>,
    b1: &Taken<1>,
) -> Vec<f32> {
    let [features, hidden] = w1.data.shape().dims::<2>();
    let mut z1 = match sparse {
        Some(columns) => columns.times(w1.values(), hidden),
        None => {
            let mut z1 = vec![0.0f32; batch * hidden];
            matmul(
                [batch, hidden, features],
                &mut z1,
                (hidden, 1),
                x,
                (features, 1),
                w1.values(),
                (hidden, 1),
            );
            z1
        }
    };
    for row in z1.chunks_exact_mut(hidden) {
        for (z, b) in row.iter_mut().zip(b1.values()) {
            *z += b;
        }
    }
    z1
}

/// One training step of a two-layer head on the cached features `x` (`[batch, features]`
/// row-major) with true classes `labels`: forward with dropout drawn from `rng`, loss, backward,
/// and `optim`'s update at learning rate `lr`. The model must satisfy [`handles`].
pub fn step(
    mut model: Vgg16,
    optim: &mut ModuleOptimizer,
    lr: f64,
    x: &[f32],
    labels: &[usize],
    rng: &mut SplitMix64,
) -> (Vgg16, StepOutput) {
    let batch = labels.len();
    let dropout = model.dropout;
    // The pooled head reads each channel's mean (not trained, so no gradient flows past it).
    let pooled = model.global_pool.then(|| global_average(x));
    let x = pooled.as_deref().unwrap_or(x);
    let [first, last] = &mut model.classifier[..] else {
        unreachable!("handles() checked two dense layers")
    };
    let w1 = Taken::<2>::take(&mut first.weight);
    let b1 = Taken::<1>::take(first.bias.as_mut().expect("bias"));
    let w2 = Taken::<2>::take(&mut last.weight);
    let b2 = Taken::<1>::take(last.bias.as_mut().expect("bias"));
    let [features, hidden] = w1.data.shape().dims::<2>();
    let classes = w2.data.shape().dims::<2>()[1];
    assert_eq!(x.len(), batch * features, "features per image");
    let sparse = Columns::of_sparse(x, batch, features);
    let z1 = first_layer(x, batch, sparse.as_ref(), &w1, &b1);
    // The keep-mask `Vgg16::forward_head_train` draws.
    let mask = (dropout > 0.0).then(|| dropout_mask(batch * hidden, dropout, rng));
    let d1: Vec<f32> = z1
        .iter()
        .enumerate()
        .map(|(i, &z)| z.max(0.0) * mask.as_ref().map_or(1.0, |m| m[i]))
        .collect();
    let mut logits = vec![0.0f32; batch * classes];
    for (d, out) in d1
        .chunks_exact(hidden)
        .zip(logits.chunks_exact_mut(classes))
    {
        out.copy_from_slice(b2.values());
        for (j, &dj) in d.iter().enumerate() {
            if dj != 0.0 {
                let w = &w2.values()[j * classes..(j + 1) * classes];
                for (o, wc) in out.iter_mut().zip(w) {
                    *o += dj * wc;
                }
            }
        }
    }

    // Loss and its gradient with respect to the logits: (softmax − one-hot) / batch.
    let mut loss = 0.0f64;
    let mut g = vec![0.0f32; batch * classes];
    for ((row, grow), &label) in logits
        .chunks_exact(classes)
        .zip(g.chunks_exact_mut(classes))
        .zip(labels)
    {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
        let log_sum = sum.ln() + max;
        loss -= f64::from(row[label] - log_sum);
        for (c, (gv, v)) in grow.iter_mut().zip(row).enumerate() {
            let p = (v - log_sum).exp();
            *gv = (p - f32::from(u8::from(c == label))) / batch as f32;
        }
    }
    loss /= batch as f64;

    // Backward through the last layer.
    let mut dw2 = vec![0.0f32; hidden * classes];
    let mut db2 = vec![0.0f32; classes];
    let mut dz1 = vec![0.0f32; batch * hidden];
    for b in 0..batch {
        let grow = &g[b * classes..(b + 1) * classes];
        for (acc, gv) in db2.iter_mut().zip(grow) {
            *acc += gv;
        }
        for j in 0..hidden {
            let dj = d1[b * hidden + j];
            let wrow = &w2.values()[j * classes..(j + 1) * classes];
            let mut dd = 0.0f32;
            for c in 0..classes {
                dw2[j * classes + c] += dj * grow[c];
                dd += grow[c] * wrow[c];
            }
            // Through the mask and the ReLU (its gradient is 1 where its input is positive).
            let i = b * hidden + j;
            if z1[i] > 0.0 {
                dz1[i] = dd * mask.as_ref().map_or(1.0, |m| m[i]);
            }
        }
    }
    let mut db1 = vec![0.0f32; hidden];
    for row in dz1.chunks_exact(hidden) {
        for (acc, v) in db1.iter_mut().zip(row) {
            *acc += v;
        }
    }
    // dW1 = xᵀ·dz1, 25 MB written once into a buffer Burn adopts without a copy.
    let mut dw1 = AlignedF32::zeros(features * hidden);
    match &sparse {
        Some(columns) => columns.transposed_times(&dz1, hidden, dw1.as_mut_slice()),
        None => matmul(
            [features, hidden, batch],
            dw1.as_mut_slice(),
            (hidden, 1),
            x,
            (1, features),
            &dz1,
            (hidden, 1),
        ),
    }
    let dw1 = dw1.into_data([features, hidden]);

    let mut grads = GradientsParams::new();
    let cpu = Device::flex();
    grads.register(w1.id, Tensor::<2>::from_data(dw1, &cpu));
    grads.register(
        b1.id,
        Tensor::<1>::from_data(TensorData::new(db1, [hidden]), &cpu),
    );
    grads.register(
        w2.id,
        Tensor::<2>::from_data(TensorData::new(dw2, [hidden, classes]), &cpu),
    );
    grads.register(
        b2.id,
        Tensor::<1>::from_data(TensorData::new(db2, [classes]), &cpu),
    );
    let [first, last] = &mut model.classifier[..] else {
        unreachable!("two dense layers")
    };
    w1.put_back(&mut first.weight);
    b1.put_back(first.bias.as_mut().expect("bias"));
    w2.put_back(&mut last.weight);
    b2.put_back(last.bias.as_mut().expect("bias"));
    let model = optim.step(lr, model, grads);
    (model, StepOutput { loss, logits })
}

#[cfg(test)]
mod tests {
    use burn::module::Module as _;

    use super::*;
    use crate::model::host::to_host;
    use crate::model::{HeadKind, Vgg16Config};
    use crate::train::optim::FusedAdam;

    /// `[batch, features]` values in which about `zeros` of every hundred are 0.
    fn features(batch: usize, len: usize, zeros: u64, seed: u64) -> Vec<f32> {
        let mut rng = SplitMix64(seed);
        (0..batch * len)
            .map(|_| {
                let v = rng.next_f32();
                if rng.next_u64() % 100 < zeros { 0.0 } else { v }
            })
            .collect()
    }

    fn head(model: &Vgg16) -> Vec<Vec<f32>> {
        model
            .classifier
            .iter()
            .flat_map(|l| {
                [
                    to_host(l.weight.val().inner()),
                    to_host(l.bias.as_ref().unwrap().val().inner()),
                ]
            })
            .collect()
    }

    #[test]
    fn the_hand_written_step_is_the_autodiff_step() {
        let device = Device::flex().autodiff();
        // Sparse inputs take the column kernels, dense ones `gemm`; with and without dropout;
        // the pooled head averages its input first (and its first layer reads the means).
        for (kind, zeros, dropout) in [
            (HeadKind::Dense256, 86, 0.5),
            (HeadKind::Dense256, 0, 0.5),
            (HeadKind::Dense256, 86, 0.0),
            (HeadKind::Pooled, 86, 0.5),
        ] {
            let config = Vgg16Config {
                num_classes: 3,
                input_size: 32,
                width_divisor: 16,
                head: kind,
                dropout,
            };
            let (batch, len) = (12, config.feature_len());
            let labels: Vec<usize> = (0..batch).map(|i| (i * 7) % 3).collect();
            let start = config.init(&device).train();
            assert_eq!(start.classifier.len(), 2);
            let initial = head(&start);
            let (mut by_hand, mut by_burn) = (start.clone(), start);
            let (mut optim_a, mut optim_b) = (
                ModuleOptimizer::from(FusedAdam::new(0.0)),
                ModuleOptimizer::from(FusedAdam::new(0.0)),
            );
            let (mut rng_a, mut rng_b) = (SplitMix64(3), SplitMix64(3));
            for step_no in 0..4 {
                let x = features(batch, len, zeros, step_no);
                let (model, out) = step(by_hand, &mut optim_a, 1e-3, &x, &labels, &mut rng_a);
                by_hand = model;

                let input = Tensor::<2>::from_data(TensorData::new(x, [batch, len]), &device);
                let logits = by_burn.forward_head_train(input, &mut rng_b);
                let loss = crate::train::stepper::cross_entropy(logits.clone(), &labels);
                let burn_loss = f64::from(to_host(loss.clone())[0]);
                let burn_logits = to_host(logits);
                let grads = GradientsParams::from_grads(loss.backward(), &by_burn);
                by_burn = optim_b.step(1e-3, by_burn, grads);

                assert!(
                    (out.loss - burn_loss).abs() < 1e-5,
                    "{kind:?}, {zeros}% zeros, step {step_no}: loss {} vs {burn_loss}",
                    out.loss
                );
                for (a, b) in out.logits.iter().zip(&burn_logits) {
                    assert!((a - b).abs() < 1e-4, "logits {a} vs {b}");
                }
            }
            for (i, (a, b)) in head(&by_hand).iter().zip(&head(&by_burn)).enumerate() {
                assert_eq!(a.len(), b.len());
                let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
                let diff = a
                    .iter()
                    .zip(b)
                    .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(
                    diff <= 1e-4 * scale,
                    "{kind:?}, {zeros}% zeros, parameter {i}: differs by {diff} (largest {scale})"
                );
            }
            // The weights moved: the comparison is not between two untouched models.
            for (now, then) in head(&by_hand).iter().zip(&initial) {
                let moved = now
                    .iter()
                    .zip(then)
                    .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
                // Adam moves each weight by up to the learning rate (1e-3) a step; Burn's
                // unseeded initialisation once left a bias at 9.2e-4 after four steps.
                assert!(
                    moved > 1e-4,
                    "{kind:?}, {zeros}% zeros: a parameter moved only {moved}"
                );
            }
        }
    }
}
