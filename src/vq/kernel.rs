//! The fused CPU kernel of nearest-code search: for each row of z (N, D) the codebook row
//! (K, D) with the smallest squared Euclidean distance, without ever holding the N×K
//! distance matrix.
//!
//! argmin_k ‖z − e_k‖² = argmin_k (½‖e_k‖² − z·e_k): the codebook's half squared norms are
//! computed once, and a register-blocked micro-kernel computes a tile of dot products
//! (MR rows of z × NR codes) and folds it straight into a running minimum per row. The
//! tile never leaves the registers. Rows of z are packed per block (MR-row panels,
//! D-major) so that any strides are accepted without a contiguous copy; the codebook is
//! read in place (rows may have any stride, a copy is made only when its columns are not
//! contiguous). Work is split over rayon threads by row blocks, and also over codebook
//! ranges when there are too few rows to keep every thread busy.
//!
//! Ties: every code's score is computed by the same sequence of operations, so equal
//! codebook rows give bit-equal scores; codes are visited in ascending order with a strict
//! `<`, and codebook ranges are merged in ascending order, so the lowest index wins, as in
//! `torch.argmin`.
//!
//! The reported distance of the chosen code is recomputed directly as Σ(z − e)² with a
//! float64 accumulator, so it is accurate and never negative (the expanded form cancels).
//!
//! Micro-kernels: AVX-512F and AVX2+FMA intrinsics for f32 (picked at run time), AVX2+FMA
//! for f64 (auto-vectorised), and a portable fallback for everything else.

use rayon::prelude::*;
use std::marker::PhantomData;
use std::ops::{Add, Mul, Sub};

/// The floating types the kernel runs on natively.
pub(crate) trait Real:
    Copy
    + Send
    + Sync
    + PartialOrd
    + Default
    + std::fmt::Debug
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + 'static
{
    const ZERO: Self;
    const INFINITY: Self;
    const MAX: f64;
    fn to_f64(self) -> f64;
    fn from_f64(value: f64) -> Self;
    fn finite(self) -> bool;
    /// a*b + c with one rounding (std's mul_add: fast only where FMA hardware is enabled).
    fn fused(self, b: Self, c: Self) -> Self;
    /// Runs the search with the best micro-kernel this CPU has for the type (or the one
    /// `isa` names, for tests).
    fn search(
        z: MatRef<'_, Self>,
        codebook: MatRef<'_, Self>,
        isa: Isa,
    ) -> Result<Nearest<Self>, KernelError>;
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const INFINITY: Self = f32::INFINITY;
    const MAX: f64 = f32::MAX as f64;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(value: f64) -> Self {
        value as f32
    }
    #[inline(always)]
    fn finite(self) -> bool {
        self.is_finite()
    }
    #[inline(always)]
    fn fused(self, b: Self, c: Self) -> Self {
        self.mul_add(b, c)
    }
    fn search(
        z: MatRef<'_, f32>,
        codebook: MatRef<'_, f32>,
        isa: Isa,
    ) -> Result<Nearest<f32>, KernelError> {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => drive(z, codebook, x86::Avx512F32),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => drive(z, codebook, x86::Avx2F32),
            _ => drive(z, codebook, Portable::<16, 4>),
        }
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const INFINITY: Self = f64::INFINITY;
    const MAX: f64 = f64::MAX;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(value: f64) -> Self {
        value
    }
    #[inline(always)]
    fn finite(self) -> bool {
        self.is_finite()
    }
    #[inline(always)]
    fn fused(self, b: Self, c: Self) -> Self {
        self.mul_add(b, c)
    }
    fn search(
        z: MatRef<'_, f64>,
        codebook: MatRef<'_, f64>,
        isa: Isa,
    ) -> Result<Nearest<f64>, KernelError> {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 | Isa::Avx2Fma => drive(z, codebook, x86::Avx2F64),
            _ => drive(z, codebook, Portable::<8, 4>),
        }
    }
}

/// Instruction sets with a micro-kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    Portable,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx2Fma,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx512,
}

impl Isa {
    /// The best kernel this CPU runs.
    pub(crate) fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2Fma;
            }
        }
        Isa::Portable
    }

    /// The kernels this CPU can run, best first (tests run all of them).
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Isa> {
        let best = Isa::detect();
        [Isa::Avx512, Isa::Avx2Fma, Isa::Portable]
            .into_iter()
            .filter(|isa| match best {
                Isa::Avx512 => true,
                Isa::Avx2Fma => *isa != Isa::Avx512,
                Isa::Portable => *isa == Isa::Portable,
            })
            .collect()
    }
}

/// A read-only view of a strided matrix (strides in elements, as torch counts them).
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a, T> {
    ptr: *const T,
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
    _data: PhantomData<&'a [T]>,
}

// SAFETY: a MatRef only reads, and the data it points to outlives it ('a).
unsafe impl<T: Sync> Send for MatRef<'_, T> {}
unsafe impl<T: Sync> Sync for MatRef<'_, T> {}

impl<'a, T: Copy> MatRef<'a, T> {
    /// A row-major view of a slice; None when the slice is too short.
    pub(crate) fn row_major(data: &'a [T], rows: usize, cols: usize) -> Option<Self> {
        if rows.checked_mul(cols)? > data.len() {
            return None;
        }
        Some(MatRef {
            ptr: data.as_ptr(),
            rows,
            cols,
            row_stride: cols as isize,
            col_stride: 1,
            _data: PhantomData,
        })
    }

    /// # Safety
    /// For every i < rows and j < cols, `ptr + i*row_stride + j*col_stride` must be a
    /// readable, initialised T that nobody writes while the view lives.
    pub(crate) unsafe fn from_raw(
        ptr: *const T,
        rows: usize,
        cols: usize,
        row_stride: isize,
        col_stride: isize,
    ) -> Self {
        MatRef {
            ptr,
            rows,
            cols,
            row_stride,
            col_stride,
            _data: PhantomData,
        }
    }

    /// Element (i, j); the caller keeps i < rows and j < cols.
    #[inline(always)]
    unsafe fn at(&self, i: usize, j: usize) -> T {
        *self
            .ptr
            .offset(i as isize * self.row_stride + j as isize * self.col_stride)
    }

    #[inline(always)]
    unsafe fn row_ptr(&self, i: usize) -> *const T {
        self.ptr.wrapping_offset(i as isize * self.row_stride)
    }

    /// Visits row i's elements in order.
    #[inline(always)]
    fn row_iter(&self, i: usize) -> impl Iterator<Item = T> + '_ {
        debug_assert!(i < self.rows);
        // SAFETY: i < rows, j < cols (the view's contract).
        (0..self.cols).map(move |j| unsafe { self.at(i, j) })
    }
}

/// Σx² of row i in f64 (8 independent partial sums, so the adds pipeline) and whether
/// every element is finite.
fn row_norm<T: Real>(m: &MatRef<'_, T>, i: usize) -> (f64, bool) {
    let mut acc = [0.0f64; 8];
    let mut finite = true;
    if m.col_stride == 1 && m.cols > 0 {
        // SAFETY: row i holds cols contiguous elements (col_stride 1).
        let row = unsafe { std::slice::from_raw_parts(m.row_ptr(i), m.cols) };
        let mut chunks = row.chunks_exact(8);
        for chunk in &mut chunks {
            for (a, &x) in acc.iter_mut().zip(chunk) {
                finite &= x.finite();
                *a += x.to_f64() * x.to_f64();
            }
        }
        for (a, &x) in acc.iter_mut().zip(chunks.remainder()) {
            finite &= x.finite();
            *a += x.to_f64() * x.to_f64();
        }
    } else {
        for (j, x) in m.row_iter(i).enumerate() {
            finite &= x.finite();
            acc[j % 8] += x.to_f64() * x.to_f64();
        }
    }
    (acc.iter().sum(), finite)
}

/// Σ(a − b)² of two rows in f64.
fn row_distance<T: Real>(a: &MatRef<'_, T>, i: usize, b: &MatRef<'_, T>, j: usize) -> f64 {
    let mut acc = [0.0f64; 8];
    for (t, (x, y)) in a.row_iter(i).zip(b.row_iter(j)).enumerate() {
        let diff = x.to_f64() - y.to_f64();
        acc[t % 8] += diff * diff;
    }
    acc.iter().sum()
}

/// The result: per row of z, the chosen code and its squared distance.
#[derive(Debug)]
pub(crate) struct Nearest<T> {
    pub ids: Vec<i64>,
    pub distances: Vec<T>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KernelError {
    /// NaN or ±inf in z (first bad row) or in the codebook (first bad code).
    NonFiniteZ(usize),
    NonFiniteCodebook(usize),
    /// A squared norm that does not fit in the dtype.
    OverflowZ(usize),
    OverflowCodebook(usize),
    EmptyCodebook,
    ShapeMismatch {
        z_cols: usize,
        codebook_cols: usize,
    },
    TooManyCodes(usize),
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelError::NonFiniteZ(row) => write!(f, "z contains NaN or inf (row {row})"),
            KernelError::NonFiniteCodebook(row) => {
                write!(f, "codebook contains NaN or inf (row {row})")
            }
            KernelError::OverflowZ(row) => {
                write!(f, "the squared norm of z row {row} overflows its dtype")
            }
            KernelError::OverflowCodebook(row) => {
                write!(
                    f,
                    "the squared norm of codebook row {row} overflows its dtype"
                )
            }
            KernelError::EmptyCodebook => write!(f, "the codebook has no rows"),
            KernelError::ShapeMismatch {
                z_cols,
                codebook_cols,
            } => {
                write!(
                    f,
                    "z has {z_cols} columns but the codebook has {codebook_cols}"
                )
            }
            KernelError::TooManyCodes(k) => {
                write!(f, "the codebook has {k} rows, more than 2^31 - 1")
            }
        }
    }
}

/// Nearest codebook row of every row of z, on the best micro-kernel of this CPU, in the
/// current rayon pool.
pub(crate) fn nearest<T: Real>(
    z: MatRef<'_, T>,
    codebook: MatRef<'_, T>,
) -> Result<Nearest<T>, KernelError> {
    T::search(z, codebook, Isa::detect())
}

/// As `nearest`, on a chosen micro-kernel (which the CPU must support).
#[cfg(test)]
pub(crate) fn nearest_with<T: Real>(
    z: MatRef<'_, T>,
    codebook: MatRef<'_, T>,
    isa: Isa,
) -> Result<Nearest<T>, KernelError> {
    T::search(z, codebook, isa)
}

/// A group of NR codes: row pointers (d contiguous values each), half squared norms, and
/// the index of the first.
struct Codes<'a, T> {
    rows: &'a [*const T],
    hesq: &'a [T],
    first: i32,
}

/// A micro-kernel: for an MR-row panel of packed z (D-major: element (r, d) at d*MR + r)
/// and NR code rows, computes s[r][j] = codes.hesq[j] − z_r·e_j and, for j = 0..NR in order,
/// replaces (minv[r], mini[r]) by (s[r][j], first + j) where s[r][j] < minv[r].
trait Tile<T: Real>: Copy + Send + Sync {
    const MR: usize;
    const NR: usize;
    /// # Safety
    /// `zp` holds d*MR values; `codes` NR rows of d contiguous values and NR norms;
    /// `minv` and `mini` MR values each. The CPU supports the kernel.
    unsafe fn tile(
        self,
        d: usize,
        zp: *const T,
        codes: &Codes<'_, T>,
        minv: *mut T,
        mini: *mut i32,
    );
}

/// The portable kernel: plain Rust over fixed-size arrays (no fused multiply-add, so it
/// needs no special instructions).
#[derive(Clone, Copy)]
struct Portable<const MR: usize, const NR: usize>;

impl<T: Real, const MR: usize, const NR: usize> Tile<T> for Portable<MR, NR> {
    const MR: usize = MR;
    const NR: usize = NR;
    #[inline(never)]
    unsafe fn tile(
        self,
        d: usize,
        zp: *const T,
        codes: &Codes<'_, T>,
        minv: *mut T,
        mini: *mut i32,
    ) {
        tile_arrays::<T, MR, NR, false>(d, zp, codes, minv, mini)
    }
}

#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn tile_arrays<T: Real, const MR: usize, const NR: usize, const FUSED: bool>(
    d: usize,
    zp: *const T,
    codes: &Codes<'_, T>,
    minv: *mut T,
    mini: *mut i32,
) {
    let mut acc = [[T::ZERO; MR]; NR];
    let code: [*const T; NR] = std::array::from_fn(|j| codes.rows[j]);
    for k in 0..d {
        let a = &*(zp.add(k * MR) as *const [T; MR]);
        for j in 0..NR {
            let b = *code[j].add(k);
            for r in 0..MR {
                acc[j][r] = if FUSED {
                    a[r].fused(b, acc[j][r])
                } else {
                    a[r] * b + acc[j][r]
                };
            }
        }
    }
    let minv = &mut *(minv as *mut [T; MR]);
    let mini = &mut *(mini as *mut [i32; MR]);
    for j in 0..NR {
        for r in 0..MR {
            let s = codes.hesq[j] - acc[j][r];
            if s < minv[r] {
                minv[r] = s;
                mini[r] = codes.first.wrapping_add(j as i32);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{tile_arrays, Codes, Tile};
    use std::arch::x86_64::*;

    /// AVX2 + FMA, f32: 16 rows (two ymm) × 6 codes = 12 accumulators.
    #[derive(Clone, Copy)]
    pub(super) struct Avx2F32;

    impl Tile<f32> for Avx2F32 {
        const MR: usize = 16;
        const NR: usize = 6;
        #[inline(always)]
        unsafe fn tile(
            self,
            d: usize,
            zp: *const f32,
            codes: &Codes<'_, f32>,
            minv: *mut f32,
            mini: *mut i32,
        ) {
            avx2_f32(d, zp, codes, minv, mini)
        }
    }

    // The indexed loops keep the register tiles readable.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_f32(
        d: usize,
        zp: *const f32,
        codes: &Codes<'_, f32>,
        minv: *mut f32,
        mini: *mut i32,
    ) {
        const NR: usize = 6;
        let c: [*const f32; NR] = std::array::from_fn(|j| codes.rows[j]);
        let mut acc = [[_mm256_setzero_ps(); 2]; NR];
        let mut a = zp;
        for k in 0..d {
            let a0 = _mm256_loadu_ps(a);
            let a1 = _mm256_loadu_ps(a.add(8));
            for j in 0..NR {
                let b = _mm256_broadcast_ss(&*c[j].add(k));
                acc[j][0] = _mm256_fmadd_ps(a0, b, acc[j][0]);
                acc[j][1] = _mm256_fmadd_ps(a1, b, acc[j][1]);
            }
            a = a.add(16);
        }
        for half in 0..2 {
            let mut best = _mm256_loadu_ps(minv.add(8 * half));
            let mut idx = _mm256_loadu_si256(mini.add(8 * half) as *const __m256i);
            for j in 0..NR {
                let s = _mm256_sub_ps(_mm256_set1_ps(codes.hesq[j]), acc[j][half]);
                let better = _mm256_cmp_ps::<_CMP_LT_OQ>(s, best);
                best = _mm256_blendv_ps(best, s, better);
                let id = _mm256_set1_epi32(codes.first + j as i32);
                idx = _mm256_castps_si256(_mm256_blendv_ps(
                    _mm256_castsi256_ps(idx),
                    _mm256_castsi256_ps(id),
                    better,
                ));
            }
            _mm256_storeu_ps(minv.add(8 * half), best);
            _mm256_storeu_si256(mini.add(8 * half) as *mut __m256i, idx);
        }
    }

    /// AVX-512F, f32: 32 rows (two zmm) × 12 codes = 24 accumulators.
    #[derive(Clone, Copy)]
    pub(super) struct Avx512F32;

    impl Tile<f32> for Avx512F32 {
        const MR: usize = 32;
        const NR: usize = 12;
        #[inline(always)]
        unsafe fn tile(
            self,
            d: usize,
            zp: *const f32,
            codes: &Codes<'_, f32>,
            minv: *mut f32,
            mini: *mut i32,
        ) {
            avx512_f32(d, zp, codes, minv, mini)
        }
    }

    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f")]
    unsafe fn avx512_f32(
        d: usize,
        zp: *const f32,
        codes: &Codes<'_, f32>,
        minv: *mut f32,
        mini: *mut i32,
    ) {
        const NR: usize = 12;
        let c: [*const f32; NR] = std::array::from_fn(|j| codes.rows[j]);
        let mut acc = [[_mm512_setzero_ps(); 2]; NR];
        let mut a = zp;
        for k in 0..d {
            let a0 = _mm512_loadu_ps(a);
            let a1 = _mm512_loadu_ps(a.add(16));
            for j in 0..NR {
                let b = _mm512_set1_ps(*c[j].add(k));
                acc[j][0] = _mm512_fmadd_ps(a0, b, acc[j][0]);
                acc[j][1] = _mm512_fmadd_ps(a1, b, acc[j][1]);
            }
            a = a.add(32);
        }
        for half in 0..2 {
            let mut best = _mm512_loadu_ps(minv.add(16 * half));
            let mut idx = _mm512_loadu_si512(mini.add(16 * half) as *const _);
            for j in 0..NR {
                let s = _mm512_sub_ps(_mm512_set1_ps(codes.hesq[j]), acc[j][half]);
                let better = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(s, best);
                best = _mm512_mask_mov_ps(best, better, s);
                idx = _mm512_mask_mov_epi32(idx, better, _mm512_set1_epi32(codes.first + j as i32));
            }
            _mm512_storeu_ps(minv.add(16 * half), best);
            _mm512_storeu_si512(mini.add(16 * half) as *mut _, idx);
        }
    }

    /// AVX2 + FMA, f64: the array kernel, compiled for these instructions (8 rows × 6
    /// codes, auto-vectorised with fused multiply-add).
    #[derive(Clone, Copy)]
    pub(super) struct Avx2F64;

    impl Tile<f64> for Avx2F64 {
        const MR: usize = 8;
        const NR: usize = 6;
        #[inline(always)]
        unsafe fn tile(
            self,
            d: usize,
            zp: *const f64,
            codes: &Codes<'_, f64>,
            minv: *mut f64,
            mini: *mut i32,
        ) {
            avx2_f64(d, zp, codes, minv, mini)
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_f64(
        d: usize,
        zp: *const f64,
        codes: &Codes<'_, f64>,
        minv: *mut f64,
        mini: *mut i32,
    ) {
        tile_arrays::<f64, 8, 6, true>(d, zp, codes, minv, mini)
    }
}

/// A zero-initialised buffer of T whose first element sits on a 64-byte boundary.
struct AlignedBuf<T> {
    data: Vec<T>,
    offset: usize,
}

impl<T: Real> AlignedBuf<T> {
    fn zeros(len: usize) -> Self {
        let pad = 64 / std::mem::size_of::<T>();
        let data = vec![T::ZERO; len + pad];
        let misalign = (data.as_ptr() as usize % 64) / std::mem::size_of::<T>();
        let offset = if misalign == 0 { 0 } else { pad - misalign };
        AlignedBuf { data, offset }
    }

    fn as_mut_slice(&mut self, len: usize) -> &mut [T] {
        &mut self.data[self.offset..self.offset + len]
    }
}

/// Rows of z per block: the packed block (MC × D) should stay in a core's L2 cache.
const BLOCK_BYTES: usize = 256 * 1024;
const MAX_BLOCK_ROWS: usize = 512;

/// How the work is cut: row blocks of `mc` rows, codebook ranges of `kc` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    mc: usize,
    kc: usize,
    row_blocks: usize,
    code_splits: usize,
}

fn plan(n: usize, k: usize, d: usize, elem: usize, mr: usize, nr: usize, threads: usize) -> Plan {
    let threads = threads.max(1);
    let round_up = |x: usize, m: usize| x.div_ceil(m) * m;
    let cache_rows = (BLOCK_BYTES / (d.max(1) * elem)) / mr * mr;
    let cache_rows = cache_rows.clamp(mr, MAX_BLOCK_ROWS);
    let per_thread = round_up(n.div_ceil(threads), mr);
    let mc = cache_rows.min(per_thread).max(mr);
    let row_blocks = n.div_ceil(mc);
    // Too few row blocks for the threads: also split the codebook (ranges of at least
    // 16 micro-tiles, so each task still amortises its packing).
    let code_splits = if row_blocks >= threads {
        1
    } else {
        let wanted = (2 * threads).div_ceil(row_blocks);
        wanted.min(k.div_ceil(16 * nr)).max(1)
    };
    let kc = round_up(k.div_ceil(code_splits), nr);
    let code_splits = k.div_ceil(kc);
    Plan {
        mc,
        kc,
        row_blocks,
        code_splits,
    }
}

fn drive<T: Real, K: Tile<T>>(
    z: MatRef<'_, T>,
    codebook: MatRef<'_, T>,
    kernel: K,
) -> Result<Nearest<T>, KernelError> {
    let (n, d) = (z.rows, z.cols);
    let k = codebook.rows;
    if codebook.cols != d {
        return Err(KernelError::ShapeMismatch {
            z_cols: d,
            codebook_cols: codebook.cols,
        });
    }
    if k == 0 {
        return Err(KernelError::EmptyCodebook);
    }
    if k > i32::MAX as usize {
        return Err(KernelError::TooManyCodes(k));
    }

    // Validate z (finite, squared norms that fit) in one parallel pass.
    let bad_z = (0..n).into_par_iter().with_min_len(64).find_first(|&i| {
        let (sum, finite) = row_norm(&z, i);
        !finite || sum > T::MAX
    });
    if let Some(i) = bad_z {
        let (_, finite) = row_norm(&z, i);
        return Err(if finite {
            KernelError::OverflowZ(i)
        } else {
            KernelError::NonFiniteZ(i)
        });
    }

    // The micro-kernel reads code rows as contiguous runs: copy the codebook only when its
    // columns are strided.
    let owned: Vec<T>;
    let codebook = if codebook.col_stride == 1 || d <= 1 {
        codebook
    } else {
        let mut copy = vec![T::ZERO; k * d];
        copy.par_chunks_mut(d).enumerate().for_each(|(c, row)| {
            for (out, x) in row.iter_mut().zip(codebook.row_iter(c)) {
                *out = x;
            }
        });
        owned = copy;
        MatRef::row_major(&owned, k, d).ok_or(KernelError::EmptyCodebook)?
    };

    // Half squared norms of the codes, accumulated in f64, with validation.
    let norms: Vec<Result<T, KernelError>> = (0..k)
        .into_par_iter()
        .with_min_len(64)
        .map(|c| {
            let (sum, finite) = row_norm(&codebook, c);
            if !finite {
                Err(KernelError::NonFiniteCodebook(c))
            } else if sum > T::MAX {
                Err(KernelError::OverflowCodebook(c))
            } else {
                Ok(T::from_f64(0.5 * sum))
            }
        })
        .collect();
    let hesq = norms.into_iter().collect::<Result<Vec<T>, KernelError>>()?;
    if n == 0 {
        return Ok(Nearest {
            ids: Vec::new(),
            distances: Vec::new(),
        });
    }

    let (mr, nr) = (K::MR, K::NR);
    let p = plan(
        n,
        k,
        d,
        std::mem::size_of::<T>(),
        mr,
        nr,
        rayon::current_num_threads(),
    );
    let zero_row = vec![T::ZERO; d.max(1)];

    // One task per (row block, codebook range); each gives its rows' best (score, id).
    let tasks: Vec<(Vec<T>, Vec<i32>)> = (0..p.row_blocks * p.code_splits)
        .into_par_iter()
        .map(|task| {
            let (block, split) = (task / p.code_splits, task % p.code_splits);
            let rows = block * p.mc..((block + 1) * p.mc).min(n);
            let codes = split * p.kc..((split + 1) * p.kc).min(k);
            let m = rows.len();
            let panels = m.div_ceil(mr);
            let mut buf = AlignedBuf::zeros(panels * mr * d);
            let zp = buf.as_mut_slice(panels * mr * d);
            for panel in 0..panels {
                let out = &mut zp[panel * mr * d..(panel + 1) * mr * d];
                for r in 0..mr.min(m - panel * mr) {
                    for (dd, x) in z.row_iter(rows.start + panel * mr + r).enumerate() {
                        out[dd * mr + r] = x;
                    }
                }
            }
            let mut minv = vec![T::INFINITY; panels * mr];
            let mut mini = vec![codes.start as i32; panels * mr];
            let mut ptrs = vec![zero_row.as_ptr(); nr];
            let mut hs = vec![T::INFINITY; nr];
            let mut c0 = codes.start;
            while c0 < codes.end {
                for j in 0..nr {
                    let c = c0 + j;
                    if c < codes.end {
                        // SAFETY: c < k.
                        ptrs[j] = unsafe { codebook.row_ptr(c) };
                        hs[j] = hesq[c];
                    } else {
                        ptrs[j] = zero_row.as_ptr();
                        hs[j] = T::INFINITY;
                    }
                }
                for panel in 0..panels {
                    // SAFETY: the panel holds d*mr packed values, the code rows d contiguous
                    // values (col_stride 1, or d <= 1), minv/mini mr values from panel*mr;
                    // the kernel was picked for this CPU.
                    unsafe {
                        kernel.tile(
                            d,
                            zp.as_ptr().add(panel * mr * d),
                            &Codes {
                                rows: &ptrs,
                                hesq: &hs,
                                first: c0 as i32,
                            },
                            minv.as_mut_ptr().add(panel * mr),
                            mini.as_mut_ptr().add(panel * mr),
                        );
                    }
                }
                c0 += nr;
            }
            minv.truncate(m);
            mini.truncate(m);
            (minv, mini)
        })
        .collect();

    // Merge codebook ranges in ascending order (strict <: the lowest index keeps ties).
    let mut ids = vec![0i64; n];
    for block in 0..p.row_blocks {
        let start = block * p.mc;
        let (best, first_ids) = &tasks[block * p.code_splits];
        let mut best = best.clone();
        let mut best_ids = first_ids.clone();
        for split in 1..p.code_splits {
            let (v, i) = &tasks[block * p.code_splits + split];
            for r in 0..best.len() {
                if v[r] < best[r] {
                    best[r] = v[r];
                    best_ids[r] = i[r];
                }
            }
        }
        for (r, id) in best_ids.iter().enumerate() {
            ids[start + r] = *id as i64;
        }
    }

    // The distance of the chosen code, directly: Σ(z − e)², accumulated in f64.
    let distances: Vec<T> = ids
        .par_iter()
        .enumerate()
        .with_min_len(64)
        .map(|(i, &c)| T::from_f64(row_distance(&z, i, &codebook, c as usize)))
        .collect();
    Ok(Nearest { ids, distances })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift), values in [-1, 1).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        }
        fn vec(&mut self, len: usize) -> Vec<f64> {
            (0..len).map(|_| self.next()).collect()
        }
    }

    fn exact(z: &[f64], e: &[f64], d: usize) -> Vec<Vec<f64>> {
        z.chunks(d.max(1))
            .map(|zr| {
                e.chunks(d.max(1))
                    .map(|er| zr.iter().zip(er).map(|(a, b)| (a - b) * (a - b)).sum())
                    .collect()
            })
            .collect()
    }

    /// Checks ids against float64 distances: the chosen code is within `tol` × (‖z‖² +
    /// max‖e‖²) of the minimum, and the reported distance is the chosen code's.
    fn check<T: Real>(z: &[f64], e: &[f64], n: usize, k: usize, d: usize, isa: Isa, tol: f64) {
        let zt: Vec<T> = z.iter().map(|&x| T::from_f64(x)).collect();
        let et: Vec<T> = e.iter().map(|&x| T::from_f64(x)).collect();
        let z64: Vec<f64> = zt.iter().map(|x| x.to_f64()).collect();
        let e64: Vec<f64> = et.iter().map(|x| x.to_f64()).collect();
        let out = nearest_with(
            MatRef::row_major(&zt, n, d).unwrap(),
            MatRef::row_major(&et, k, d).unwrap(),
            isa,
        )
        .unwrap();
        assert_eq!(out.ids.len(), n);
        let dist = exact(&z64, &e64, d);
        let emax = e64
            .chunks(d.max(1))
            .map(|r| r.iter().map(|x| x * x).sum::<f64>())
            .fold(0.0, f64::max);
        for i in 0..n {
            let best = dist[i].iter().cloned().fold(f64::INFINITY, f64::min);
            let chosen = dist[i][out.ids[i] as usize];
            let zsq: f64 = z64[i * d..(i + 1) * d].iter().map(|x| x * x).sum();
            assert!(
                chosen - best <= tol * (zsq + emax),
                "{isa:?} n={n} k={k} d={d} row {i}: chose {} at {chosen}, best {best}",
                out.ids[i]
            );
            let reported = out.distances[i].to_f64();
            assert!(
                (reported - chosen).abs() <= 1e-6 * chosen + 1e-30,
                "row {i}: {reported} vs {chosen}"
            );
        }
    }

    #[test]
    fn matches_float64_on_many_shapes() {
        let mut rng = Rng(0x9e3779b97f4a7c15);
        for isa in Isa::available() {
            for &(n, k, d) in &[
                (1, 1, 1),
                (1, 7, 3),
                (17, 5, 1),
                (33, 13, 8),
                (64, 97, 16),
                (100, 300, 31),
                (257, 1000, 64),
                (5, 4000, 256),
            ] {
                let z = rng.vec(n * d);
                let e = rng.vec(k * d);
                check::<f32>(&z, &e, n, k, d, isa, 1e-5);
                check::<f64>(&z, &e, n, k, d, isa, 1e-12);
            }
        }
    }

    #[test]
    fn duplicated_codes_pick_the_lowest_index() {
        let mut rng = Rng(42);
        let (n, d) = (70, 9);
        let base = rng.vec(5 * d);
        // Codes: 5 distinct rows, each repeated 4 times in an interleaved order.
        let mut e = Vec::new();
        for _ in 0..4 {
            e.extend_from_slice(&base);
        }
        let k = 20;
        let z: Vec<f32> = (0..n)
            .flat_map(|i| base[(i % 5) * d..(i % 5 + 1) * d].to_vec())
            .map(|x| x as f32 + 0.001)
            .collect();
        let e32: Vec<f32> = e.iter().map(|&x| x as f32).collect();
        for isa in Isa::available() {
            let out = nearest_with(
                MatRef::row_major(&z, n, d).unwrap(),
                MatRef::row_major(&e32, k, d).unwrap(),
                isa,
            )
            .unwrap();
            for i in 0..n {
                assert_eq!(out.ids[i], (i % 5) as i64, "{isa:?} row {i}");
            }
            // All-equal codebook: index 0 everywhere.
            let same = vec![0.5f32; 40 * d];
            let out = nearest_with(
                MatRef::row_major(&z, n, d).unwrap(),
                MatRef::row_major(&same, 40, d).unwrap(),
                isa,
            )
            .unwrap();
            assert!(out.ids.iter().all(|&i| i == 0), "{isa:?}");
        }
    }

    #[test]
    fn strided_inputs() {
        let mut rng = Rng(7);
        let (n, k, d) = (40, 50, 12);
        let zt = rng.vec(n * d); // stored transposed: (d, n)
        let et = rng.vec(k * d); // stored transposed: (d, k)
        let z: Vec<f32> = zt.iter().map(|&x| x as f32).collect();
        let e: Vec<f32> = et.iter().map(|&x| x as f32).collect();
        // SAFETY: (i, j) -> j*n + i stays inside the buffers.
        let zv = unsafe { MatRef::from_raw(z.as_ptr(), n, d, 1, n as isize) };
        let ev = unsafe { MatRef::from_raw(e.as_ptr(), k, d, 1, k as isize) };
        let zr: Vec<f32> = (0..n)
            .flat_map(|i| (0..d).map(move |j| (i, j)))
            .map(|(i, j)| z[j * n + i])
            .collect();
        let er: Vec<f32> = (0..k)
            .flat_map(|i| (0..d).map(move |j| (i, j)))
            .map(|(i, j)| e[j * k + i])
            .collect();
        for isa in Isa::available() {
            let a = nearest_with(zv, ev, isa).unwrap();
            let b = nearest_with(
                MatRef::row_major(&zr, n, d).unwrap(),
                MatRef::row_major(&er, k, d).unwrap(),
                isa,
            )
            .unwrap();
            assert_eq!(a.ids, b.ids);
            assert_eq!(a.distances, b.distances);
        }
    }

    #[test]
    fn errors_and_edges() {
        let z = [1.0f32, f32::NAN, 0.0, 0.0];
        let e = [0.0f32, 0.0];
        let err = nearest(
            MatRef::row_major(&z, 2, 2).unwrap(),
            MatRef::row_major(&e, 1, 2).unwrap(),
        )
        .unwrap_err();
        assert_eq!(err, KernelError::NonFiniteZ(0));
        let e = [0.0f32, 0.0, f32::INFINITY, 1.0];
        let ok = [0.0f32; 4];
        let err = nearest(
            MatRef::row_major(&ok, 2, 2).unwrap(),
            MatRef::row_major(&e, 2, 2).unwrap(),
        )
        .unwrap_err();
        assert_eq!(err, KernelError::NonFiniteCodebook(1));
        let big = [3e19f32, 3e19];
        let err = nearest(
            MatRef::row_major(&big, 1, 2).unwrap(),
            MatRef::row_major(&ok, 2, 2).unwrap(),
        )
        .unwrap_err();
        assert_eq!(err, KernelError::OverflowZ(0));
        let none: [f32; 0] = [];
        let out = nearest(
            MatRef::row_major(&none, 0, 2).unwrap(),
            MatRef::row_major(&ok, 2, 2).unwrap(),
        )
        .unwrap();
        assert!(out.ids.is_empty());
        let err = nearest(
            MatRef::row_major(&ok, 2, 2).unwrap(),
            MatRef::row_major(&none, 0, 2).unwrap(),
        )
        .unwrap_err();
        assert_eq!(err, KernelError::EmptyCodebook);
        let err = nearest(
            MatRef::row_major(&ok, 2, 2).unwrap(),
            MatRef::row_major(&ok, 1, 4).unwrap(),
        )
        .unwrap_err();
        assert!(matches!(err, KernelError::ShapeMismatch { .. }));
        // D = 0: every distance is 0, code 0 wins.
        let out = nearest(
            MatRef::row_major(&none, 3, 0).unwrap(),
            MatRef::row_major(&none, 4, 0).unwrap(),
        )
        .unwrap();
        assert_eq!(out.ids, vec![0, 0, 0]);
        assert_eq!(out.distances, vec![0.0, 0.0, 0.0]);
    }

    #[test]
    fn plans_cover_the_work() {
        for &(n, k, threads) in &[
            (1, 1, 2),
            (1, 8192, 2),
            (1024, 8192, 2),
            (8192, 8192, 16),
            (100, 3, 4),
            (5, 100, 1),
        ] {
            let p = plan(n, k, 256, 4, 16, 6, threads);
            assert!(p.mc.is_multiple_of(16) && p.kc.is_multiple_of(6), "{p:?}");
            assert!(
                p.row_blocks * p.mc >= n && (p.row_blocks - 1) * p.mc < n,
                "{p:?}"
            );
            assert!(
                p.code_splits * p.kc >= k && (p.code_splits - 1) * p.kc < k,
                "{p:?}"
            );
        }
        assert_eq!(plan(1, 8192, 256, 4, 16, 6, 2).code_splits, 4);
        assert_eq!(plan(8192, 8192, 256, 4, 16, 6, 2).code_splits, 1);
    }
}
