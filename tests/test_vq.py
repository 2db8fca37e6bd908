"""lverse.vq.nearest against a float64 reference, plus ties, edge cases and errors.

Tolerance: scores are computed in float32, so a chosen code may differ from the float64
nearest only by float32 rounding. We accept a chosen code whose float64 squared distance
is within TOL32 * (‖z‖² + max‖e‖²) of the float64 minimum (TOL32 = 1e-5, about 84 float32
ulps of the terms the score cancels); float64 inputs get TOL64 = 1e-12. Reported distances
must equal the chosen code's float64 distance to rtol 1e-5 (float32) / 1e-12 (float64).
"""

from __future__ import annotations

import multiprocessing
import threading

import lverse.vq as vq
import pytest
import torch

from .conftest import cuda

TOL32 = 1e-5
TOL64 = 1e-12



def sqdist64(z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Exact-enough float64 squared distances (N, K), in blocks to bound memory."""
    z, e = z.double().cpu(), e.double().cpu()
    rows = []
    for start in range(0, z.shape[0], 64):
        block = z[start : start + 64]
        rows.append(((block[:, None, :] - e[None, :, :]) ** 2).sum(-1))
    return torch.cat(rows) if rows else torch.zeros(0, e.shape[0], dtype=torch.float64)


def assert_near_optimal(z, e, ids, dists, tol=TOL32):
    assert ids.dtype == torch.int64 and ids.shape == (z.shape[0],)
    assert dists.shape == (z.shape[0],)
    ids, dists = ids.cpu(), dists.cpu()
    d64 = sqdist64(z, e)
    assert ids.min() >= 0 and ids.max() < e.shape[0]
    best = d64.min(1).values
    chosen = d64.gather(1, ids[:, None]).squeeze(1)
    scale = z.double().cpu().pow(2).sum(1) + e.double().cpu().pow(2).sum(1).max()
    excess = chosen - best - tol * scale
    assert (excess <= 0).all(), f"rows farther than tolerance: {(excess > 0).nonzero().flatten()}"
    rtol = 1e-12 if dists.dtype == torch.float64 else 1e-5
    torch.testing.assert_close(dists.double(), chosen, rtol=rtol, atol=1e-7)
    assert (dists >= 0).all()
    return d64


SHAPES = [
    (1, 1, 1),
    (5, 7, 3),
    (17, 1, 4),
    (64, 100, 1),
    (100, 300, 31),
    (33, 4097, 8),
    (257, 1000, 64),
    (1024, 512, 256),
    (3, 8192, 256),
]


@pytest.mark.parametrize("n,k,d", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_random_against_float64(n, k, d, dtype):
    g = torch.Generator().manual_seed(n * 1_000_003 + k * 31 + d)
    z = torch.randn(n, d, generator=g, dtype=dtype)
    e = torch.randn(k, d, generator=g, dtype=dtype)
    ids, dists = vq.nearest(z, e)
    assert dists.dtype == dtype
    d64 = assert_near_optimal(z, e, ids, dists, TOL32 if dtype == torch.float32 else TOL64)
    # On random data nearly every choice is the exact float64 argmin.
    exact = (ids == d64.argmin(1)).float().mean().item()
    assert exact >= (0.99 if dtype == torch.float32 else 1.0)


def test_clustered_codes_near_ties():
    # Codes packed tightly around a few centres, queries between them: many near-ties.
    g = torch.Generator().manual_seed(3)
    centres = torch.randn(8, 32, generator=g) * 10
    e = (centres.repeat(64, 1) + 1e-3 * torch.randn(512, 32, generator=g)).contiguous()
    z = centres.repeat(40, 1) + 1e-3 * torch.randn(320, 32, generator=g)
    ids, dists = vq.nearest(z, e)
    assert_near_optimal(z, e, ids, dists)


def test_agrees_with_reference_expression():
    g = torch.Generator().manual_seed(4)
    z = torch.randn(500, 64, generator=g)
    e = torch.randn(2000, 64, generator=g)
    reference = (z.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * z @ e.t()).argmin(1)
    ids, _ = vq.nearest(z, e)
    assert (ids == reference).float().mean().item() >= 0.99


def test_duplicated_rows_lowest_index_wins():
    g = torch.Generator().manual_seed(5)
    base = torch.randn(6, 16, generator=g)
    # Copies of each base row at scattered positions; the first copy of row j is at j.
    order = torch.cat([torch.arange(6), torch.randperm(6, generator=g), torch.randperm(6, generator=g)])
    e = base[order]
    z = base.repeat(20, 1) + 1e-3 * torch.randn(120, 16, generator=g)
    ids, _ = vq.nearest(z, e)
    expected = torch.arange(6).repeat(20)
    assert torch.equal(ids, expected)
    # Exact ties between different codes: z = 0 is equidistant from +1 and -1.
    for codes in ([[1.0], [-1.0]], [[-1.0], [1.0]]):
        ids, dists = vq.nearest(torch.zeros(3, 1), torch.tensor(codes))
        assert ids.tolist() == [0, 0, 0] and dists.tolist() == [1.0, 1.0, 1.0]
    # A constant codebook: every row picks code 0.
    ids, _ = vq.nearest(torch.randn(50, 7, generator=g), torch.full((300, 7), 0.25))
    assert (ids == 0).all()


def test_n_zero_k_one_d_one():
    e = torch.randn(5, 3)
    ids, dists = vq.nearest(torch.zeros(0, 3), e)
    assert ids.shape == (0,) and ids.dtype == torch.int64
    assert dists.shape == (0,) and dists.dtype == torch.float32
    z = torch.randn(40, 3)
    ids, dists = vq.nearest(z, e[:1])
    assert (ids == 0).all()
    torch.testing.assert_close(dists, ((z - e[0]) ** 2).sum(1))
    z1, e1 = torch.randn(100, 1), torch.randn(9, 1)
    ids, dists = vq.nearest(z1, e1)
    assert torch.equal(ids, (z1.double() - e1.double().t()).abs().argmin(1))
    assert_near_optimal(z1, e1, ids, dists)


def test_non_contiguous_inputs():
    g = torch.Generator().manual_seed(6)
    zt = torch.randn(48, 100, generator=g)  # z = zt.t(): (100, 48), column-major
    et = torch.randn(48, 70, generator=g)  # codebook = et.t(): (70, 48)
    z, e = zt.t(), et.t()
    assert not z.is_contiguous() and not e.is_contiguous()
    ids, dists = vq.nearest(z, e)
    ids_c, dists_c = vq.nearest(z.contiguous(), e.contiguous())
    assert torch.equal(ids, ids_c) and torch.equal(dists, dists_c)
    assert_near_optimal(z, e, ids, dists)
    # Strided rows and columns, an expanded (stride 0) z, a row-strided codebook.
    big = torch.randn(300, 90, generator=g)
    cases = [
        (big[::3, ::2], big[1::2, ::2][:60]),
        (torch.randn(1, 45, generator=g).expand(20, 45), big[:50, 1::2]),
        (big[:10, :30], big[::5, :30]),
    ]
    for z, e in cases:
        ids, dists = vq.nearest(z, e)
        assert_near_optimal(z, e, ids, dists)
        ids_c, _ = vq.nearest(z.contiguous(), e.contiguous())
        assert torch.equal(ids, ids_c)


def test_misaligned_data_pointer():
    # torch.frombuffer at an odd byte offset gives a float32 tensor that is not 4-aligned.
    buf = bytearray(4 * 30 * 6 + 2)
    z = torch.frombuffer(buf, dtype=torch.float32, offset=2, count=30 * 6).view(30, 6)
    z.copy_(torch.randn(30, 6, generator=torch.Generator().manual_seed(11)))
    assert z.data_ptr() % 4 != 0
    e = torch.randn(9, 6)
    ids, dists = vq.nearest(z, e)
    assert_near_optimal(z, e, ids, dists)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_accumulate_in_float32(dtype):
    g = torch.Generator().manual_seed(7)
    z = torch.randn(200, 64, generator=g).to(dtype)
    e = torch.randn(300, 64, generator=g).to(dtype)
    ids, dists = vq.nearest(z, e)
    assert dists.dtype == torch.float32
    # Judged on the (exactly) widened values.
    assert_near_optimal(z.float(), e.float(), ids, dists)


def test_no_gradient_and_inputs_untouched():
    z = torch.randn(30, 8, requires_grad=True)
    e = torch.randn(12, 8)
    before = (z.detach().clone(), e.clone())
    ids, dists = vq.nearest(z, e)
    assert not dists.requires_grad
    assert torch.equal(z.detach(), before[0]) and torch.equal(e, before[1])


def test_threads_and_concurrent_calls():
    g = torch.Generator().manual_seed(8)
    z = torch.randn(600, 32, generator=g)
    e = torch.randn(900, 32, generator=g)
    expected = vq.nearest(z, e)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = vq.nearest(z, e)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(single[0], expected[0]) and torch.equal(single[1], expected[1])
    results = [None] * 4

    def work(i):
        results[i] = vq.nearest(z, e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for r in results:
        assert r is not None and torch.equal(r[0], expected[0])


def _child(_):
    z = torch.randn(100, 16)
    e = torch.randn(50, 16)
    ids, _ = vq.nearest(z, e)
    return ids.shape[0]


def test_works_after_fork():
    vq.nearest(torch.randn(500, 16), torch.randn(50, 16))  # the parent's pool exists
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        assert pool.apply_async(_child, (0,)).get(timeout=120) == 100


# ---- errors -------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_inputs_raise(value):
    z = torch.randn(10, 4)
    e = torch.randn(6, 4)
    bad_z = z.clone()
    bad_z[7, 2] = value
    with pytest.raises(ValueError, match=r"z contains NaN or inf \(row 7\)"):
        vq.nearest(bad_z, e)
    bad_e = e.clone()
    bad_e[3, 0] = value
    with pytest.raises(ValueError, match=r"codebook contains NaN or inf \(row 3\)"):
        vq.nearest(z, bad_e)
    with pytest.raises(ValueError, match="NaN or inf"):
        vq.nearest(bad_z.double(), e.double())
    with pytest.raises(ValueError, match="NaN or inf"):
        vq.nearest(z.half(), bad_e.half())


def test_overflowing_norms_raise():
    with pytest.raises(ValueError, match="overflows"):
        vq.nearest(torch.full((2, 4), 1e20), torch.zeros(3, 4))


def test_shape_dtype_device_errors():
    z = torch.randn(4, 8)
    e = torch.randn(5, 8)
    with pytest.raises(ValueError, match="same D"):
        vq.nearest(z, torch.randn(5, 7))
    with pytest.raises(ValueError, match="2-D"):
        vq.nearest(z.flatten(), e)
    with pytest.raises(ValueError, match="2-D"):
        vq.nearest(z, e[None])
    with pytest.raises(ValueError, match="no rows"):
        vq.nearest(z, torch.zeros(0, 8))
    with pytest.raises(TypeError, match="same dtype"):
        vq.nearest(z, e.double())
    with pytest.raises(TypeError, match="float32, float64, float16 or bfloat16"):
        vq.nearest(z.long(), e.long())
    with pytest.raises(TypeError, match="torch.Tensor"):
        vq.nearest(z.numpy(), e)
    with pytest.raises(TypeError, match="torch.Tensor"):
        vq.nearest(z, [[0.0] * 8])


# ---- CUDA -----------------------------------------------------------------------------


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_cuda_parity(dtype):
    g = torch.Generator().manual_seed(9)
    z = torch.randn(700, 64, generator=g).to(dtype)
    e = torch.randn(1500, 64, generator=g).to(dtype)
    ids, dists = vq.nearest(z.cuda(), e.cuda())
    assert ids.is_cuda and dists.is_cuda
    assert dists.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    tol = TOL64 if dtype == torch.float64 else TOL32
    wide = torch.float64 if dtype == torch.float64 else torch.float32
    assert_near_optimal(z.to(wide), e.to(wide), ids, dists, tol)
    cpu_ids, _ = vq.nearest(z, e)
    assert (ids.cpu() == cpu_ids).float().mean().item() >= 0.99


@cuda
def test_cuda_chunks_ties_and_errors():
    # 40 000 rows × 8192 codes spans several row and code chunks (256 MiB each).
    g = torch.Generator().manual_seed(10)
    base = torch.randn(8192, 16, generator=g)
    e = torch.cat([base[:4096], base[:4096]]).cuda()  # code j + 4096 duplicates code j
    z = (base[:4096].repeat(10, 1)[:40000] + 1e-3 * torch.randn(40000, 16, generator=g)).cuda()
    ids, _ = vq.nearest(z, e)
    assert (ids < 4096).all()
    assert torch.equal(ids.cpu(), torch.arange(4096).repeat(10)[:40000])
    ids, dists = vq.nearest(torch.zeros(0, 16, device="cuda"), e)
    assert ids.shape == (0,) and ids.is_cuda
    bad = z[:10].clone()
    bad[3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        vq.nearest(bad, e)
    with pytest.raises(TypeError, match="same device"):
        vq.nearest(z[:10].cpu(), e)
