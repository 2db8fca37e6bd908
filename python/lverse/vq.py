"""Vector quantization: nearest-code search (SPEC §2.4).

``nearest`` finds, for each row of ``z`` (N, D), the codebook row (K, D) at the smallest
squared Euclidean distance. On the CPU it runs a fused native kernel (blocked dot products
with precomputed codebook norms and a running argmin, in parallel, never holding the N×K
distance matrix); on CUDA, libtorch matmuls over chunks of the codebook with a running
argmin, so memory stays bounded by one chunk (256 MiB).

The search is registered as the PyTorch custom operator ``torch.ops.lverse.vq_nearest``
with a fake (meta) implementation, so the quantizer calls it inside training forwards,
``torch.compile(fullgraph=True)`` graphs and ``torch.export`` programs without a graph break.
"""

from __future__ import annotations

import torch

from . import _native
from ._checks import is_transformed

__all__ = ["nearest"]


def nearest(z: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest codebook row of every row of ``z``.

    Args:
        z: (N, D) float32, float64, float16 or bfloat16 tensor, any strides.
        codebook: (K, D) tensor of the same dtype and device, K >= 1.

    Returns:
        ``(ids, squared_distances)``: ``ids`` is an int64 tensor (N,) of codebook indices,
        ``squared_distances`` (N,) holds ``‖z_i − codebook[ids_i]‖²``, float32 (float64 for
        float64 inputs), on the inputs' device. No gradient flows through either.

    Semantics:
        Ties go to the lowest index, as ``torch.argmin``. Scores are computed in float32
        (float64 for float64 inputs; float16 and bfloat16 are widened first), so the
        chosen code is the exact (float64) nearest except where two codes lie within
        float32 rounding of each other; on CUDA the matmuls follow torch's TF32 setting
        (off by default). The reported distance is recomputed directly as Σ(z − e)² of the
        chosen code, so it is accurate and never negative.

    Raises:
        TypeError: a non-tensor argument, a non-floating dtype, different dtypes or devices.
        ValueError: a tensor that is not 2-D, different D, an empty codebook, NaN or inf in
            either input, or squared norms that overflow the dtype.
    """
    for name, value in (("z", z), ("codebook", codebook)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    # The search is not differentiable: outputs never carry a grad_fn, whatever the inputs.
    with torch.no_grad():
        return search(z, codebook)


def search(z: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``nearest`` without its argument checks, for lverse's quantizer. Plain tensors in eager
    mode go straight to the native function: the custom operator's first eager call imports
    torch._dynamo (about 2 s and 150 MiB). Inside torch.compile or torch.export, and for any
    tensor subclass or functorch wrapper (vmap, FakeTensor), it is the operator, which the
    tracer understands and which refuses what it cannot run."""
    plain = type(z) in _PLAIN and type(codebook) in _PLAIN
    if plain and not torch.compiler.is_compiling() and not is_transformed(z) and not is_transformed(codebook):
        return tuple(_native.vq_nearest(z, codebook))
    return _vq_nearest(z, codebook)


_PLAIN = (torch.Tensor, torch.nn.Parameter)


@torch.library.custom_op("lverse::vq_nearest", mutates_args=())
def _vq_nearest(z: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(_native.vq_nearest(z, codebook))


@_vq_nearest.register_fake
def _(z: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Shapes and dtypes only; the native function checks the values when it really runs.
    torch._check(z.dim() == 2 and codebook.dim() == 2, lambda: "z and codebook must be 2-D")
    torch._check(z.shape[1] == codebook.shape[1], lambda: "z and codebook must have the same D")
    distance = torch.float64 if z.dtype == torch.float64 else torch.float32
    return z.new_empty(z.shape[0], dtype=torch.int64), z.new_empty(z.shape[0], dtype=distance)
