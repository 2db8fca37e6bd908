//! Nearest-neighbour search of vector quantization: for each row of z (N, D) the index of
//! the closest codebook row (K, D) by squared Euclidean distance (SPEC §2.4).
//!
//! `nearest` is the fast path: on the CPU a fused native kernel (`kernel`) that never
//! holds the N×K distance matrix; elsewhere (CUDA) libtorch matmuls over chunks of the
//! codebook with a running argmin, memory bounded by the chunk. The tests compare it with
//! `nearest_reference`, the official expression.

mod kernel;

use crate::error::{Error, Result};
use kernel::{KernelError, MatRef, Real};
use tch::{Device, Kind, Tensor};

/// The official expression, op for op: ‖z‖² + ‖e‖² − 2·z·eᵀ over the whole N×K matrix,
/// then argmin (first index on ties): the tests' reference.
#[cfg(test)]
pub fn nearest_reference(z: &Tensor, codebook: &Tensor) -> Result<Tensor> {
    let z_sq = z
        .f_pow_tensor_scalar(2)?
        .f_sum_dim_intlist(1, true, None::<tch::Kind>)?;
    let e_sq = codebook
        .f_pow_tensor_scalar(2)?
        .f_sum_dim_intlist(1, false, None::<tch::Kind>)?;
    let cross = Tensor::f_einsum("bd,nd->bn", &[z, codebook], None::<&[i64]>)?;
    let distances = z_sq.f_add(&e_sq)?.f_sub(&cross.f_mul_scalar(2.0)?)?;
    Ok(distances.f_argmin(1, false)?)
}

/// Bytes of one block of distances on the libtorch (CUDA) path.
const CHUNK_BYTES: i64 = 256 << 20;

/// For z (N, D) and codebook (K, D) of one floating dtype on one device: the index of the
/// nearest codebook row of every row of z (int64, N) and its squared distance (N; float32,
/// or float64 for float64 inputs), both on the inputs' device. No gradient flows.
///
/// Ties go to the lowest index, as `torch.argmin`. Scores are computed in float32 (float64
/// for float64 inputs; float16 and bfloat16 are widened first), so the chosen code is the
/// exact nearest except where two codes are within float32 rounding of each other. The
/// distance reported is the chosen code's, recomputed directly as Σ(z − e)² (accurate,
/// never negative). Any strides are accepted.
///
/// Errors: `Shape` for ranks, mismatched D or an empty codebook; `Kind` for non-floating
/// or mismatched dtypes, different devices, or sparse tensors; `Value` for NaN or inf in
/// either input, or squared norms that overflow the dtype.
pub fn nearest(z: &Tensor, codebook: &Tensor) -> Result<(Tensor, Tensor)> {
    let kind = check(z, codebook)?;
    let _guard = tch::no_grad_guard();
    match z.device() {
        Device::Cpu => nearest_cpu(z, codebook, kind),
        device => nearest_chunked(z, codebook, kind, device, CHUNK_BYTES),
    }
}

fn dtype_name(kind: Kind) -> String {
    match kind {
        Kind::Float => "float32".into(),
        Kind::Double => "float64".into(),
        Kind::Half => "float16".into(),
        Kind::BFloat16 => "bfloat16".into(),
        Kind::Int64 => "int64".into(),
        Kind::Int => "int32".into(),
        Kind::Int16 => "int16".into(),
        Kind::Int8 => "int8".into(),
        Kind::Uint8 => "uint8".into(),
        Kind::Bool => "bool".into(),
        other => format!("{other:?}"),
    }
}

fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
    }
}

/// Validates ranks, sizes, dtypes, devices and layouts; gives the common dtype.
fn check(z: &Tensor, codebook: &Tensor) -> Result<Kind> {
    for (name, t) in [("z", z), ("codebook", codebook)] {
        if !t.defined() {
            return Err(Error::Value(format!("{name} is an undefined tensor")));
        }
        if t.is_sparse() || t.is_mkldnn() {
            return Err(Error::Kind(format!(
                "{name} must be a dense (strided) tensor"
            )));
        }
        if t.dim() != 2 {
            let what = if name == "z" { "(N, D)" } else { "(K, D)" };
            return Err(Error::Shape(format!(
                "{name} must be a 2-D tensor {what}, got shape {:?}",
                t.size()
            )));
        }
    }
    let (zs, es) = (z.size(), codebook.size());
    if zs[1] != es[1] {
        return Err(Error::Shape(format!(
            "z and codebook must have the same D: z is {zs:?} (D = {}), codebook is {es:?} (D = {})",
            zs[1], es[1]
        )));
    }
    if es[0] == 0 {
        return Err(Error::Shape(format!(
            "the codebook has no rows (shape {es:?})"
        )));
    }
    let zk = z.f_kind()?;
    let ek = codebook.f_kind()?;
    for (name, kind) in [("z", zk), ("codebook", ek)] {
        if !matches!(
            kind,
            Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
        ) {
            return Err(Error::Kind(format!(
                "{name} must be float32, float64, float16 or bfloat16, got {}",
                dtype_name(kind)
            )));
        }
    }
    if zk != ek {
        return Err(Error::Kind(format!(
            "z and codebook must have the same dtype, got {} and {}",
            dtype_name(zk),
            dtype_name(ek)
        )));
    }
    if z.device() != codebook.device() {
        return Err(Error::Kind(format!(
            "z and codebook must be on the same device, got {} and {}",
            device_name(z.device()),
            device_name(codebook.device())
        )));
    }
    Ok(zk)
}

fn kernel_error(err: KernelError) -> Error {
    match err {
        KernelError::EmptyCodebook
        | KernelError::ShapeMismatch { .. }
        | KernelError::TooManyCodes(_) => Error::Shape(err.to_string()),
        _ => Error::Value(err.to_string()),
    }
}

/// A view of a 2-D CPU tensor of element type T.
///
/// # Safety
/// `t` is a dense, defined 2-D CPU tensor whose dtype is T's; the view must not outlive it,
/// and nothing may write to it meanwhile.
unsafe fn view<T: Copy>(t: &Tensor) -> MatRef<'_, T> {
    let size = t.size();
    let stride = t.stride();
    MatRef::from_raw(
        t.data_ptr() as *const T,
        size[0] as usize,
        size[1] as usize,
        stride[0] as isize,
        stride[1] as isize,
    )
}

fn nearest_cpu(z: &Tensor, codebook: &Tensor, kind: Kind) -> Result<(Tensor, Tensor)> {
    let (n, d) = (z.size()[0], z.size()[1]);
    let out_kind = if kind == Kind::Double {
        Kind::Double
    } else {
        Kind::Float
    };
    if d == 0 {
        // Every distance is 0: code 0 everywhere (argmin's first index).
        return Ok((
            Tensor::f_zeros([n], (Kind::Int64, Device::Cpu))?,
            Tensor::f_zeros([n], (out_kind, Device::Cpu))?,
        ));
    }
    match kind {
        Kind::Float => run_cpu::<f32>(z, codebook),
        Kind::Double => run_cpu::<f64>(z, codebook),
        // float16 / bfloat16: widened to float32 (exactly), then the float32 kernel.
        _ => run_cpu::<f32>(
            &z.f_to_kind(Kind::Float)?,
            &codebook.f_to_kind(Kind::Float)?,
        ),
    }
}

/// The tensor itself, or an aligned copy when its data pointer is not aligned for T
/// (possible with `torch.frombuffer` at an odd offset).
fn aligned_for<T>(t: &Tensor) -> Result<Tensor> {
    if (t.data_ptr() as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Ok(t.shallow_clone());
    }
    let mut copy = t.f_zeros_like()?;
    copy.f_copy_(t)?;
    Ok(copy)
}

fn run_cpu<T: Real + tch::kind::Element>(
    z: &Tensor,
    codebook: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let (z, codebook) = (aligned_for::<T>(z)?, aligned_for::<T>(codebook)?);
    let (z, codebook) = (&z, &codebook);
    // SAFETY: `check` made both dense 2-D CPU tensors, the caller gave them T's dtype,
    // `aligned_for` T's alignment; they outlive the views, and the kernel only reads.
    let (zv, ev) = unsafe { (view::<T>(z), view::<T>(codebook)) };
    let out = crate::pool::install(|| kernel::nearest(zv, ev)).map_err(kernel_error)?;
    Ok((
        Tensor::f_from_slice(&out.ids)?,
        Tensor::f_from_slice(&out.distances)?,
    ))
}

/// The libtorch path (any device): for row chunks, scores ½‖e‖² − z·eᵀ over codebook
/// chunks of at most `chunk_bytes`, a running argmin merged in ascending code order
/// (strict <, so the lowest index keeps ties), then the chosen codes' distances directly.
fn nearest_chunked(
    z: &Tensor,
    codebook: &Tensor,
    kind: Kind,
    device: Device,
    chunk_bytes: i64,
) -> Result<(Tensor, Tensor)> {
    let compute = if kind == Kind::Double {
        Kind::Double
    } else {
        Kind::Float
    };
    let elem: i64 = if compute == Kind::Double { 8 } else { 4 };
    let z = z.f_to_kind(compute)?;
    let e = codebook.f_to_kind(compute)?;
    let (n, d) = (z.size()[0], z.size()[1]);
    let k = e.size()[0];

    let all_true = |t: Tensor| -> Result<bool> { Ok(t.f_all()?.f_int64_value(&[])? != 0) };
    if !all_true(z.f_isfinite()?)? {
        return Err(Error::Value("z contains NaN or inf".into()));
    }
    if !all_true(e.f_isfinite()?)? {
        return Err(Error::Value("codebook contains NaN or inf".into()));
    }
    let esq = e.f_square()?.f_sum_dim_intlist(1, false, None::<Kind>)?;
    if !all_true(esq.f_isfinite()?)? {
        return Err(Error::Value(
            "the squared norm of a codebook row overflows its dtype".into(),
        ));
    }
    let zsq = z.f_square()?.f_sum_dim_intlist(1, false, None::<Kind>)?;
    if !all_true(zsq.f_isfinite()?)? {
        return Err(Error::Value(
            "the squared norm of a z row overflows its dtype".into(),
        ));
    }
    if n == 0 || d == 0 {
        return Ok((
            Tensor::f_zeros([n], (Kind::Int64, device))?,
            Tensor::f_zeros([n], (compute, device))?,
        ));
    }
    let hesq = esq.f_mul_scalar(0.5)?.f_unsqueeze(0)?;

    let rows_per_chunk = n.min((chunk_bytes / elem / k.min(4096)).max(1));
    let codes_per_chunk = k.min((chunk_bytes / elem / rows_per_chunk).max(1));
    let mut ids = Vec::new();
    let mut dists = Vec::new();
    let mut r0 = 0;
    while r0 < n {
        let rows = rows_per_chunk.min(n - r0);
        let zc = z.f_narrow(0, r0, rows)?;
        let mut best = Tensor::f_full([rows], f64::INFINITY, (compute, device))?;
        let mut best_id = Tensor::f_zeros([rows], (Kind::Int64, device))?;
        let mut c0 = 0;
        while c0 < k {
            let codes = codes_per_chunk.min(k - c0);
            let ec = e.f_narrow(0, c0, codes)?;
            let mut scores = zc.f_mm(&ec.f_transpose(0, 1)?)?;
            let _ = scores.f_neg_()?;
            let _ = scores.f_add_(&hesq.f_narrow(1, c0, codes)?)?;
            let local = scores.f_argmin(1, true)?;
            let value = scores.f_gather(1, &local, false)?.f_squeeze_dim(1)?;
            let better = value.f_lt_tensor(&best)?;
            best = value.f_where_self(&better, &best)?;
            best_id = local
                .f_squeeze_dim(1)?
                .f_add_scalar(c0)?
                .f_where_self(&better, &best_id)?;
            c0 += codes;
        }
        // Σ(z − e)² of the chosen codes, accumulated in float64.
        let chosen = e.f_index_select(0, &best_id)?;
        let dist = zc
            .f_to_kind(Kind::Double)?
            .f_sub(&chosen.f_to_kind(Kind::Double)?)?
            .f_square()?
            .f_sum_dim_intlist(1, false, None::<Kind>)?
            .f_to_kind(compute)?;
        ids.push(best_id);
        dists.push(dist);
        r0 += rows;
    }
    Ok((Tensor::f_cat(&ids, 0)?, Tensor::f_cat(&dists, 0)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float64_distances(z: &Tensor, e: &Tensor) -> Tensor {
        let z = z.to_kind(Kind::Double);
        let e = e.to_kind(Kind::Double);
        (z.unsqueeze(1) - e.unsqueeze(0))
            .square()
            .sum_dim_intlist(2, false, None::<Kind>)
    }

    /// The chosen code's float64 distance is within 1e-5 × (‖z‖² + max‖e‖²) of the best;
    /// the reported distance is the chosen code's (relative 1e-5).
    fn assert_near_optimal(z: &Tensor, e: &Tensor, ids: &Tensor, dists: &Tensor) {
        let d64 = float64_distances(z, e);
        let best = d64.amin(1, false);
        let chosen = d64.gather(1, &ids.unsqueeze(1), false).squeeze_dim(1);
        let scale = z
            .to_kind(Kind::Double)
            .square()
            .sum_dim_intlist(1, false, None::<Kind>)
            + e.to_kind(Kind::Double)
                .square()
                .sum_dim_intlist(1, false, None::<Kind>)
                .max();
        let slack = (&chosen - &best - scale * 1e-5).max().double_value(&[]);
        assert!(
            slack <= 0.0,
            "a chosen code is farther than the tolerance: {slack}"
        );
        let err = (dists.to_kind(Kind::Double) - &chosen).abs() - chosen.abs() * 1e-5 - 1e-6;
        assert!(err.max().double_value(&[]) <= 0.0);
    }

    #[test]
    fn random_shapes_against_float64() {
        tch::manual_seed(0);
        for &(n, k, d) in &[
            (1, 1, 1),
            (3, 1, 5),
            (7, 3, 1),
            (50, 33, 16),
            (200, 513, 64),
            (64, 1000, 256),
        ] {
            for kind in [Kind::Float, Kind::Double] {
                let z = Tensor::randn([n, d], (kind, Device::Cpu));
                let e = Tensor::randn([k, d], (kind, Device::Cpu));
                let (ids, dists) = nearest(&z, &e).unwrap();
                assert_eq!(ids.size(), vec![n]);
                assert_eq!(ids.kind(), Kind::Int64);
                assert_eq!(dists.kind(), kind);
                assert_near_optimal(&z, &e, &ids, &dists);
                // The libtorch path, with chunks small enough to cut rows and codes.
                let (ids2, dists2) = nearest_chunked(&z, &e, kind, Device::Cpu, 4 * 8 * 7).unwrap();
                assert_near_optimal(&z, &e, &ids2, &dists2);
            }
        }
    }

    #[test]
    fn agrees_with_the_reference_on_ordinary_data() {
        tch::manual_seed(1);
        let z = Tensor::randn([300, 32], (Kind::Float, Device::Cpu));
        let e = Tensor::randn([700, 32], (Kind::Float, Device::Cpu));
        let (ids, _) = nearest(&z, &e).unwrap();
        let reference = nearest_reference(&z, &e).unwrap();
        let same = ids
            .eq_tensor(&reference)
            .to_kind(Kind::Int64)
            .sum(Kind::Int64)
            .int64_value(&[]);
        assert!(same >= 297, "{same} of 300 agree");
    }

    #[test]
    fn strides_dtypes_and_ties() {
        tch::manual_seed(2);
        let z = Tensor::randn([24, 40], (Kind::Float, Device::Cpu));
        let e = Tensor::randn([24, 10], (Kind::Float, Device::Cpu));
        // Transposed views: neither is contiguous.
        let (zt, et) = (z.transpose(0, 1), e.transpose(0, 1));
        let (ids, dists) = nearest(&zt, &et).unwrap();
        let (ids_c, dists_c) = nearest(&zt.contiguous(), &et.contiguous()).unwrap();
        assert!(ids.equal(&ids_c) && dists.equal(&dists_c));
        // Every other row and column.
        let zs = zt.slice(0, 0, 40, 2).slice(1, 0, 24, 2);
        let es = et.slice(1, 0, 24, 2);
        let (ids, dists) = nearest(&zs, &es).unwrap();
        assert_near_optimal(&zs, &es, &ids, &dists);
        // float16 / bfloat16 are widened, distances come back as float32.
        for kind in [Kind::Half, Kind::BFloat16] {
            let (ids_h, dists_h) = nearest(&zt.to_kind(kind), &et.to_kind(kind)).unwrap();
            assert_eq!(dists_h.kind(), Kind::Float);
            assert_near_optimal(&zt.to_kind(kind), &et.to_kind(kind), &ids_h, &dists_h);
        }
        // Duplicated codes: the lowest index wins.
        let base = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
        let e = Tensor::cat(&[&base, &base, &base], 0);
        let z = &base + 0.01;
        let (ids, _) = nearest(&z, &e).unwrap();
        assert_eq!(Vec::<i64>::try_from(&ids).unwrap(), vec![0, 1, 2, 3]);
        let (ids, _) = nearest_chunked(&z, &e, Kind::Float, Device::Cpu, 8).unwrap();
        assert_eq!(Vec::<i64>::try_from(&ids).unwrap(), vec![0, 1, 2, 3]);
    }

    #[test]
    fn edge_cases_and_errors() {
        let opts = (Kind::Float, Device::Cpu);
        let e = Tensor::randn([5, 3], opts);
        let (ids, dists) = nearest(&Tensor::zeros([0, 3], opts), &e).unwrap();
        assert_eq!((ids.size(), dists.size()), (vec![0], vec![0]));
        let (ids, dists) =
            nearest(&Tensor::zeros([4, 0], opts), &Tensor::zeros([2, 0], opts)).unwrap();
        assert_eq!(Vec::<i64>::try_from(&ids).unwrap(), vec![0; 4]);
        assert_eq!(dists.size(), vec![4]);

        let z = Tensor::randn([4, 3], opts);
        let err = |z: &Tensor, e: &Tensor| nearest(z, e).unwrap_err();
        assert!(matches!(
            err(&z, &Tensor::zeros([0, 3], opts)),
            Error::Shape(_)
        ));
        assert!(matches!(
            err(&z, &Tensor::zeros([5, 4], opts)),
            Error::Shape(_)
        ));
        assert!(matches!(err(&z.view([12]), &e), Error::Shape(_)));
        assert!(matches!(err(&z, &e.to_kind(Kind::Double)), Error::Kind(_)));
        assert!(matches!(
            err(&z.to_kind(Kind::Int64), &e.to_kind(Kind::Int64)),
            Error::Kind(_)
        ));
        let bad = z.copy();
        let _ = bad.get(2).get(1).fill_(f64::NAN);
        assert!(matches!(err(&bad, &e), Error::Value(m) if m.contains("NaN or inf")));
        let bad = e.copy();
        let _ = bad.get(0).get(0).fill_(f64::NEG_INFINITY);
        assert!(matches!(err(&z, &bad), Error::Value(m) if m.contains("codebook")));
        let bad = bad.f_to_kind(Kind::Float).unwrap();
        assert!(matches!(
            nearest_chunked(&z, &bad, Kind::Float, Device::Cpu, 64).unwrap_err(),
            Error::Value(m) if m.contains("codebook contains NaN or inf")
        ));
    }
}
