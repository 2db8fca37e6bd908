//! Nearest-neighbour search of vector quantization: for each row of z (N, D) the index of
//! the closest codebook row (K, D) by squared Euclidean distance.

use crate::error::Result;
use tch::Tensor;

/// The official expression, op for op: ‖z‖² + ‖e‖² − 2·z·eᵀ over the whole N×K matrix,
/// then argmin (first index on ties). Kept as the bit-exact path of AugVAE's parity.
pub fn nearest_reference(z: &Tensor, codebook: &Tensor) -> Result<Tensor> {
    let z_sq = z.f_pow_tensor_scalar(2)?.f_sum_dim_intlist(1, true, None::<tch::Kind>)?;
    let e_sq = codebook.f_pow_tensor_scalar(2)?.f_sum_dim_intlist(1, false, None::<tch::Kind>)?;
    let cross = Tensor::f_einsum("bd,nd->bn", &[z, codebook], None::<&[i64]>)?;
    let distances = z_sq.f_add(&e_sq)?.f_sub(&cross.f_mul_scalar(2.0)?)?;
    Ok(distances.f_argmin(1, false)?)
}
