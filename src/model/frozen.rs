//! The convolution base of a model whose weights do not change (prediction, and the frozen part
//! of a training run), run the fastest way its device allows; and, for prediction, the head
//! after it (torchvision's wide dense layers in bf16 where the base runs in bf16).

use burn::tensor::Tensor;

use super::Vgg16;
use super::cpu_base::CpuConvBase;
use super::dense::{WIDE_LAYER_WEIGHTS, WideDense};
use super::host::to_host;

/// Convolutions `0..convs` of a model whose weights do not change, run the fastest way its
/// device allows: [`CpuConvBase`] on the CPU, Burn's own forward pass elsewhere (or on the CPU
/// when `VGGTUNE_CPU_CONV=burn`, for comparisons).
///
/// On a GPU a batch runs in as many passes as the device's binding limit needs: at 224 px each
/// image's output of the first convolution is 12.25 MiB, so a batch of 32 is a 392 MiB buffer,
/// more than some adapters can bind (lavapipe: 128 MiB). Images are independent here, so the
/// passes give the same values as one.
#[derive(Clone)]
pub struct FrozenConvs {
    model: Vgg16,
    convs: usize,
    cpu: Option<std::sync::Arc<CpuConvBase>>,
    binding_limit: Option<u64>,
    /// The model's wide dense layers in bf16, packed on the first [`Self::forward_head`] in
    /// bf16 (a feature pass never needs them).
    wide_dense: std::sync::Arc<std::sync::OnceLock<Option<WideDense>>>,
}

impl FrozenConvs {
    /// Wraps `model`'s first `convs` convolutions, in the precision chosen
    /// ([`super::bf16::chosen`]).
    pub fn new(model: Vgg16, convs: usize) -> Self {
        Self::with_choice(model, convs, super::bf16::chosen())
    }

    /// The same in the precision `choice` comes to on this CPU.
    pub fn with_choice(model: Vgg16, convs: usize, choice: super::bf16::Choice) -> Self {
        let convs = convs.min(model.features.len());
        let on_cpu = model
            .features
            .first()
            .is_some_and(|c| c.weight.device() == burn::tensor::Device::flex());
        let burn_forced = crate::tuning::current().cpu_conv == crate::tuning::CpuConv::Burn;
        let cpu = (on_cpu && convs > 0 && !burn_forced)
            .then(|| std::sync::Arc::new(CpuConvBase::with_choice(&model, 0..convs, choice)));
        let binding_limit = model
            .features
            .first()
            .and_then(|c| crate::device::wgpu_binding_limit(&c.weight.device()));
        Self {
            model,
            convs,
            cpu,
            binding_limit,
            wide_dense: std::sync::Arc::default(),
        }
    }

    /// Keeps the CPU base's buffers from one pass to the next while the guard lives: hold it
    /// over a job of many passes (`None` where the base is not the CPU's).
    #[must_use = "the buffers are kept only while this lives"]
    pub fn hold_buffers(&self) -> Option<super::cpu_base::HeldBuffers<'_>> {
        self.cpu.as_deref().map(CpuConvBase::hold_buffers)
    }

    /// The number format its convolutions run in (Burn's path: f32).
    pub fn precision(&self) -> super::bf16::Precision {
        self.cpu
            .as_ref()
            .map_or(super::bf16::Precision::F32, |c| c.precision())
    }

    /// The same with another binding limit for Burn's path (`None`: one pass per batch).
    pub fn with_binding_limit(mut self, limit: Option<u64>) -> Self {
        self.binding_limit = limit;
        self
    }

    /// How many images of `shape` ([n, 3, H, W]) one pass of Burn's path takes: all of them
    /// without a binding limit, else as many as keep every activation within it (at least one).
    pub fn images_per_pass(&self, shape: [usize; 4]) -> usize {
        let Some(limit) = self.binding_limit else {
            return shape[0].max(1);
        };
        let channels: Vec<usize> = self
            .model
            .features
            .iter()
            .map(|c| c.weight.dims()[0])
            .collect();
        let (_, conv_bytes) =
            crate::model::vgg::largest_activation(&channels, 0..self.convs, shape[2]);
        let input_bytes = (shape[1] * shape[2] * shape[3] * 4) as u64;
        let per_image = conv_bytes.max(input_bytes).max(1);
        ((limit / per_image) as usize).clamp(1, shape[0].max(1))
    }

    /// Burn's forward pass over `x`, in passes of at most [`Self::images_per_pass`] images.
    fn burn_forward(&self, x: Tensor<4>) -> Tensor<4> {
        let dims = x.dims();
        let per_pass = self.images_per_pass(dims);
        if per_pass >= dims[0] {
            return self.model.forward_convs(x, 0..self.convs);
        }
        let parts = x
            .split(per_pass, 0)
            .into_iter()
            .map(|part| self.model.forward_convs(part, 0..self.convs))
            .collect();
        Tensor::cat(parts, 0)
    }

    /// The whole convolution base of `model` (what prediction runs before the head).
    pub fn whole_base(model: Vgg16) -> Self {
        let convs = model.features.len();
        Self::new(model, convs)
    }

    /// Whether the CPU path runs (rather than Burn's).
    pub fn uses_cpu_base(&self) -> bool {
        self.cpu.is_some()
    }

    /// The model the convolutions belong to.
    pub fn model(&self) -> &Vgg16 {
        &self.model
    }

    /// The model's head on the base's output (`[n, C, 7, 7]` → logits), as prediction runs it:
    /// where the base runs in bf16, the dense layers of at least [`WIDE_LAYER_WEIGHTS`] weights
    /// run in bf16 too (`model::dense`), the others through Burn.
    ///
    /// The first call packs those layers, in parallel, inside a `OnceLock`: do not call it from
    /// inside a rayon job, where a second call could wait on the first on the same thread.
    pub fn forward_head(&self, base: Tensor<4>) -> Tensor<2> {
        let wide = (self.precision() == super::bf16::Precision::Bf16)
            .then(|| {
                self.wide_dense
                    .get_or_init(|| WideDense::new(&self.model, WIDE_LAYER_WEIGHTS))
                    .as_ref()
            })
            .flatten();
        match wide {
            Some(wide) => wide.forward_head(&self.model, base),
            None => self.model.forward_head(base),
        }
    }

    /// The frozen part on a batch: `[n, 3, H, W]` → what `forward_convs(x, 0..convs)` gives.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let Some(cpu) = &self.cpu else {
            return self.burn_forward(x);
        };
        let device = x.device();
        let dims = x.dims();
        let values = to_host(x);
        let [c, h, w] = cpu.output_shape([dims[1], dims[2], dims[3]]);
        let y = cpu.forward(&values, dims);
        Tensor::from_data(
            burn::tensor::TensorData::new(y, [dims[0], c, h, w]),
            &device,
        )
    }

    /// The last convolution's output after its ReLU, before the pools that follow it, on host
    /// (NCHW flattened), with one image's shape [C, H, W]: what Grad-CAM weighs.
    pub fn last_activation(&self, x: Tensor<4>) -> (Vec<f32>, [usize; 3]) {
        let dims = x.dims();
        if let Some(cpu) = &self.cpu {
            return cpu.forward_last_activation(&to_host(x), dims);
        }
        let last = self.convs.saturating_sub(1);
        let per_pass = self.images_per_pass(dims);
        let parts: Vec<Tensor<4>> = x
            .split(per_pass, 0)
            .into_iter()
            .map(|part| {
                let y = self.model.forward_convs(part, 0..last);
                burn::tensor::activation::relu(self.model.features[last].forward(y))
            })
            .collect();
        let y = Tensor::cat(parts, 0);
        let [_, c, h, w] = y.dims();
        (to_host(y), [c, h, w])
    }

    /// The same on host values (NCHW, flattened), giving host values: no tensor round trip on
    /// the CPU path.
    pub fn forward_values(&self, values: Vec<f32>, shape: [usize; 4]) -> Vec<f32> {
        match &self.cpu {
            Some(cpu) => cpu.forward(&values, shape),
            None => {
                let device = self.model.features[0].weight.device();
                let x =
                    Tensor::<4>::from_data(burn::tensor::TensorData::new(values, shape), &device);
                to_host(self.burn_forward(x))
            }
        }
    }
}
