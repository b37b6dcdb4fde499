//! Numbers on the host (the CPU's memory): reading a tensor back from wherever it lives, and the
//! one strided matrix product that the CPU convolution base and the hand-written head step share.

use burn::tensor::Tensor;

/// A tensor's values as f32 on the host (read back from wherever the tensor lives).
pub(crate) fn to_host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 tensor data")
}

/// `dst = lhs · rhs` for `[m, k] · [k, n]` matrices given as (pointer, row stride, column
/// stride), through `gemm`'s AVX-512 kernels where the CPU has them.
///
/// # Safety
/// Each pointer must address a live matrix of that shape and strides, and no other thread may
/// touch `dst`'s elements during the call.
pub(crate) unsafe fn strided_matmul(
    [m, n, k]: [usize; 3],
    (dst, dst_rs, dst_cs): (*mut f32, usize, usize),
    (lhs, lhs_rs, lhs_cs): (*const f32, usize, usize),
    (rhs, rhs_rs, rhs_cs): (*const f32, usize, usize),
    parallelism: gemm::Parallelism,
) {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            false,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
