"""AugVAE as a ``torch.nn.Module`` whose forward math runs in the native core."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch
from torch import nn

from . import _native
from ._checks import (
    require_field_types,
    require_nonnegative_int,
    require_positive_int,
    require_tensor,
)
from ._params import build_tree, named_tensors
from .checkpoint import blamed_on_file, load_augvae_checkpoint, require_config_dict, save_safetensors


@dataclass(frozen=True)
class AugVAEConfig:
    """Architecture of an AugVAE (SPEC §2.2). The defaults are the official AugVAE-ML."""

    hidden_dim: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4)
    inner_ch_mult: tuple[int, ...] = (2, 4)
    num_res_blocks: int = 2
    z_channels: int = 256
    codebook_dim: int = 256
    num_tokens: int = 8192
    resolution: int = 256
    levels: int = 4
    single_level: int | None = None
    use_attn: bool = False
    beta: float = 0.25
    ema_decay: float = 0.99
    ema_eps: float = 1e-5
    in_channels: int = 3
    out_channels: int = 3
    norm_groups: int = 32

    def __post_init__(self):
        require_field_types(self)
        if self.single_level is not None:
            require_nonnegative_int(self.single_level, "single_level")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["ch_mult"] = list(self.ch_mult)
        d["inner_ch_mult"] = list(self.inner_ch_mult)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> AugVAEConfig:
        require_config_dict(d, cls, "AugVAE")
        # JSON gives the multipliers as lists; __post_init__ checks them and stores tuples.
        return cls(**d)


class AugVAE(nn.Module):
    """L-Verse's image tokenizer.

    Parameters carry the official state_dict names and weight sharing (SPEC §2.8), so an
    official checkpoint's ``state_dict`` loads with ``load_state_dict`` and the module trains
    in an ordinary PyTorch loop: ``recon, commitment = model(x)``. ``encode``/``decode``
    convert between images in [-1, 1] and code ids.
    """

    def __init__(self, config: AugVAEConfig | None = None, **overrides):
        super().__init__()
        config = config or AugVAEConfig()
        if overrides:
            config = dataclasses.replace(config, **overrides)
        self.config = config
        self._core = _native.AugVaeCore(**config.to_dict())
        build_tree(self, self._core.param_specs())
        # The official `embedding.update` flag: the EMA codebook moves only in train mode
        # and while this is True.
        self.ema_update = True

    @classmethod
    def ml(cls, **overrides) -> AugVAE:
        """AugVAE-ML: four quantized levels (64², 32², 16², 8² at 256 px)."""
        return cls(AugVAEConfig(), **overrides)

    @classmethod
    def sl(cls, **overrides) -> AugVAE:
        """AugVAE-SL: the 32×32 level only, 1024 codes per 256 px image."""
        return cls(AugVAEConfig(single_level=1), **overrides)

    @property
    def tokens_per_image(self) -> int:
        """Number of code ids ``encode`` returns per image at the configured resolution."""
        return self._core.tokens_per_image()

    @property
    def level_sizes(self) -> list[int]:
        return self._core.level_sizes()

    def extra_repr(self) -> str:
        kind = "ML" if self.config.single_level is None else f"SL(level {self.config.single_level})"
        return f"{kind}, {self.tokens_per_image} codes per {self.config.resolution}px image"

    def _tensors(self) -> dict[str, torch.Tensor]:
        return named_tensors(self)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] -> code ids (B, N) int64 in raster order.

        SL returns its single level; ML returns every level, finest first.
        """
        images = require_tensor(images, "images")
        return self._core.encode(self._tensors(), images)

    def decode(self, ids: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """Code ids (B, N) -> images (B, 3, H, W), the decoder's raw (unclamped) output.

        ``grid`` is the (h, w) of the finest level for non-square images; square by default.
        """
        ids = require_tensor(ids, "ids")
        if grid is not None:
            if not isinstance(grid, (tuple, list)) or len(grid) != 2:
                raise ValueError(f"grid must be a pair (h, w), got {grid!r}")
            grid = (require_positive_int(grid[0], "grid height"), require_positive_int(grid[1], "grid width"))
        return self._core.decode(self._tensors(), ids, grid)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, commitment loss) with the straight-through estimator.

        In train mode (and while ``ema_update``) the shared EMA codebook is updated in place.
        Under ``torch.distributed`` the EMA statistics are then averaged over the ranks, so
        the codebook stays identical everywhere (the official code let it drift per rank).
        """
        images = require_tensor(images, "images")
        update = self.training and self.ema_update
        out = self._core.forward(self._tensors(), images, update)
        if update and torch.distributed.is_available() and torch.distributed.is_initialized():
            self.sync_codebook()
        return out

    @torch.no_grad()
    def sync_codebook(self) -> None:
        """Averages the EMA cluster sizes and code sums over all ranks and recomputes the
        codebook from them, with the same smoothing as the EMA update (SPEC §2.4). The two
        averages are linear in the per-rank statistics, so this equals an EMA over the
        statistics of the global batch."""
        import torch.distributed as dist

        embedding = self.quantizers[0].embedding
        world = dist.get_world_size()
        for tensor in (embedding.cluster_size, embedding.embed_avg):
            dist.all_reduce(tensor)
            tensor.div_(world)
        self._core.renormalize_codebook(self._tensors())

    def save(self, path: str | os.PathLike) -> None:
        """Writes lverse's format: safetensors with the config in its metadata."""
        save_safetensors(path, "augvae", self.config.to_dict(), self._tensors(), self._core.param_specs())

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, map_location="cpu") -> AugVAE:
        """Loads an official PyTorch Lightning ``.ckpt`` (ML or SL) or an lverse safetensors
        file; returns the model in eval mode."""
        config_dict, state = load_augvae_checkpoint(path)
        with blamed_on_file(path, "invalid AugVAE config"):
            model = cls(AugVAEConfig.from_dict(config_dict))
        model.load_checked(state, source=str(path))
        return model.to(map_location).eval()

    def load_checked(self, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """``load_state_dict`` that reports every missing, unexpected and mis-shaped key in
        one ``CheckpointError``."""
        from .checkpoint import check_state_dict, expand_tied

        specs = self._core.param_specs()
        state = expand_tied(state, specs)
        check_state_dict(state, specs, f"{source} does not fit {self.extra_repr()}")
        self.load_state_dict(state, strict=True)
