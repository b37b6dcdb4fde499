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

/// A tensor's values on the host as f32 `TensorData` (its own buffer when unshared).
fn host_data<const D: usize>(t: Tensor<D>) -> TensorData {
    t.into_data().convert::<f32>()
}

fn f32_slice_mut(data: &mut TensorData) -> &mut [f32] {
    data.as_mut_slice::<f32>().expect("f32 tensor data")
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
        // The values are updated in the tensors' own buffers: `into_data` hands a tensor's
        // buffer over without a copy when nothing else holds it, and `from_data` takes it back
        // the same way (a `Vec` round trip would copy each 25 MB buffer, as its alignment
        // differs from the backend's).
        let dims = tensor.dims();
        let mut p = host_data(tensor);
        let g = host_data(grad);
        let (time, mut m, mut v) = match state {
            Some(s) => (
                s.momentum.time + 1,
                host_data(s.momentum.moment_1),
                host_data(s.momentum.moment_2),
            ),
            None => (
                1,
                TensorData::zeros::<f32, _>(dims),
                TensorData::zeros::<f32, _>(dims),
            ),
        };
        let (b1, b2) = (self.beta_1, self.beta_2);
        let bias2_sqrt = (1.0 - b2.powi(time as i32)).sqrt();
        let combined = bias2_sqrt / (1.0 - b1.powi(time as i32));
        let eps = self.epsilon * bias2_sqrt;
        let (lr, decay) = (lr as f32, self.weight_decay);
        const CHUNK: usize = 1 << 14;
        f32_slice_mut(&mut p)
            .par_chunks_mut(CHUNK)
            .zip(f32_slice_mut(&mut m).par_chunks_mut(CHUNK))
            .zip(f32_slice_mut(&mut v).par_chunks_mut(CHUNK))
            .zip(
                g.as_slice::<f32>()
                    .expect("f32 tensor data")
                    .par_chunks(CHUNK),
            )
            .for_each(|(((p, m), v), g)| {
                for i in 0..p.len() {
                    let gi = g[i] + decay * p[i];
                    m[i] = b1 * m[i] + (1.0 - b1) * gi;
                    v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                    p[i] -= lr * (m[i] * combined / (v[i].sqrt() + eps));
                }
            });
        let back = |data: TensorData| Tensor::<D>::from_data(data, &device);
        let state = AdamState::new(AdaptiveMomentumState::new(time, back(m), back(v)));
        (back(p), Some(state))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <burn::optim::Adam as Optimizer>::to_device(state, device)
    }
}

/// The run's optimizer, as its settings ask.
pub(super) fn optimizer(config: &super::config::TrainConfig) -> burn::optim::ModuleOptimizer {
    use burn::optim::SgdConfig;
    use burn::optim::momentum::MomentumConfig;
    let decay =
        (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    match config.optimizer {
        super::config::OptimizerKind::Adam => {
            burn::optim::ModuleOptimizer::from(FusedAdam::new(config.weight_decay as f32))
        }
        super::config::OptimizerKind::Sgd => SgdConfig::new()
            .with_momentum(Some(
                MomentumConfig::new().with_momentum(0.9).with_dampening(0.0),
            ))
            .with_weight_decay(decay)
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::host::to_host;

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
