//! Adam with one fused pass per parameter on the CPU.
//!
//! Burn's Adam updates a parameter with about a dozen whole-tensor operations (moments, bias
//! corrections, square root, division, weight decay), each a pass over memory into a fresh
//! buffer. For the light head's first layer (25088 × 256 = 6.4 M weights) that memory traffic,
//! not the matrix products, is what a training step on cached features costs. On the CPU this
//! optimizer does the same arithmetic in one pass over the parameter, its gradient and both
//! moments; elsewhere it hands the step to Burn's Adam. Its state is Burn's [`AdamState`], so
//! checkpoints are the same either way.

use burn::optim::{
    AdamConfig, AdamState, AdaptiveMomentumState, Optimizer, decay::WeightDecayConfig,
};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use crate::model::cpu_base::to_host;

/// Adam (β₁ 0.9, β₂ 0.999, ε 1e-5, L2 weight decay added to the gradient: Burn's defaults and
/// formulas), fused on the CPU.
#[derive(Clone)]
pub struct FusedAdam {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
    burn: burn::optim::Adam,
}

impl FusedAdam {
    /// Adam with L2 `weight_decay` (0 for none).
    pub fn new(weight_decay: f32) -> Self {
        // AdamConfig's defaults (its fields are private); a test pins the two steps together.
        let decay = (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay));
        Self {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-5,
            weight_decay,
            burn: AdamConfig::new().with_weight_decay(decay).build(),
        }
    }
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let device = tensor.device();
        if device != Device::flex() {
            return self.burn.step(lr, tensor, grad, state);
        }
        let dims = tensor.dims();
        let mut p = to_host(tensor);
        let g = to_host(grad);
        let (time, mut m, mut v) = match state {
            Some(s) => (
                s.momentum.time + 1,
                to_host(s.momentum.moment_1),
                to_host(s.momentum.moment_2),
            ),
            None => (1, vec![0.0; p.len()], vec![0.0; p.len()]),
        };
        let (b1, b2) = (self.beta_1, self.beta_2);
        let bias2_sqrt = (1.0 - b2.powi(time as i32)).sqrt();
        let combined = bias2_sqrt / (1.0 - b1.powi(time as i32));
        let eps = self.epsilon * bias2_sqrt;
        let (lr, decay) = (lr as f32, self.weight_decay);
        const CHUNK: usize = 1 << 14;
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| {
                for i in 0..p.len() {
                    let gi = g[i] + decay * p[i];
                    m[i] = b1 * m[i] + (1.0 - b1) * gi;
                    v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                    p[i] -= lr * (m[i] * combined / (v[i].sqrt() + eps));
                }
            });
        let back =
            |values: Vec<f32>| Tensor::<D>::from_data(TensorData::new(values, dims), &device);
        let state = AdamState::new(AdaptiveMomentumState::new(time, back(m), back(v)));
        (back(p), Some(state))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <burn::optim::Adam as Optimizer>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(values: &[f32]) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(values.to_vec(), [2, values.len() / 2]),
            &Device::flex(),
        )
    }

    #[test]
    fn the_fused_step_is_burns_adam_step() {
        for decay in [0.0, 0.01] {
            let fused = FusedAdam::new(decay);
            let burn = fused.burn.clone();
            let (mut a, mut b) = (
                tensor(&[0.5, -1.0, 2.0, 0.0]),
                tensor(&[0.5, -1.0, 2.0, 0.0]),
            );
            let (mut sa, mut sb) = (None, None);
            for step in 0..5 {
                let g = tensor(&[0.1 * step as f32, -0.3, 1.5, 1e-4]);
                (a, sa) = fused.step(1e-2, a, g.clone(), sa);
                (b, sb) = burn.step(1e-2, b, g, sb);
            }
            let (a, b) = (to_host(a), to_host(b));
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() <= 1e-6, "decay {decay}: {a:?} vs {b:?}");
            }
            let (ma, mb) = (sa.unwrap().momentum, sb.unwrap().momentum);
            assert_eq!(ma.time, mb.time);
            for (x, y) in to_host(ma.moment_2).iter().zip(&to_host(mb.moment_2)) {
                assert!((x - y).abs() <= 1e-7);
            }
        }
    }
}
