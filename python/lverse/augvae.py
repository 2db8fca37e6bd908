"""AugVAE as a ``torch.nn.Module`` whose forward math runs in the native core."""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass

import torch
from torch import nn

from . import _native
from ._checks import (
    kind_name,
    require_field_types,
    require_nonnegative_int,
    require_positive_int,
    require_tensor,
)
from ._native_guard import module_structure, native_tensors
from ._params import initialize_from_specs, named_tensors
from .augvae_layers import Decoder, Encoder
from .checkpoint import blamed_on_file, load_augvae_checkpoint, require_config_dict, save_safetensors
from .quantizer import EMAVectorQuantizer, EmbeddingEMA


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

    A plain PyTorch module tree with the official state_dict names and weight sharing
    (SPEC §2.8: ``encoders``, ``pre_quants``, ``quantizers``, ``post_quants``, ``decoders``,
    and SL's ``connectors``), so an official checkpoint's ``state_dict`` loads with
    ``load_state_dict`` and ``forward`` trains in an ordinary PyTorch loop:
    ``recon, commitment = model(x)``. ``encode``/``decode`` convert between images in
    [-1, 1] and code ids on lverse's native inference path (no autograd; it skips levels it
    does not return, fuses the VQ search and runs upsampling as phase convolutions), reading
    this module's own tensors.
    """

    def __init__(self, config: AugVAEConfig | None = None, **overrides):
        super().__init__()
        config = config or AugVAEConfig()
        if overrides:
            config = dataclasses.replace(config, **overrides)
        specs = _param_specs(config)  # validates the config first
        self.config = c = config
        # The layers' own default initialisation would draw from the global generator and
        # change what a seed gives; their values are replaced by the core's just below.
        with torch.random.fork_rng(devices=[]):
            levels = range(c.levels)
            self.encoders = nn.ModuleList(
                Encoder(c.in_channels if k == 0 else c.z_channels, c.hidden_dim,
                        c.ch_mult if k == 0 else c.inner_ch_mult, c.num_res_blocks, c.z_channels, c.use_attn,
                        c.norm_groups)
                for k in range(_num_encoders(c))
            )
            # One codebook and one 1x1 weight per direction for every level; biases are per level.
            self.pre_quants = _shared_weight_convs(c.z_channels, c.codebook_dim, c.levels)
            embedding = EmbeddingEMA(c.num_tokens, c.codebook_dim, c.ema_decay, c.ema_eps)
            self.quantizers = nn.ModuleList(EMAVectorQuantizer(embedding, c.beta) for _ in levels)
            self.post_quants = _shared_weight_convs(c.codebook_dim, c.z_channels, c.levels)
            self.decoders = nn.ModuleList(
                Decoder(c.z_channels if ml == 0 else 2 * c.z_channels,
                        c.out_channels if ml == c.levels - 1 else c.z_channels, c.hidden_dim,
                        c.ch_mult if ml == c.levels - 1 else c.inner_ch_mult, c.num_res_blocks, c.use_attn,
                        c.norm_groups)
                for ml in _kept_ml_decoders(c)
            )
            # SL only: 1x1 convolutions standing in for the concatenated ML decoder inputs.
            if c.single_level is not None:
                self.connectors = nn.ModuleList(
                    nn.Conv2d(c.z_channels, 2 * c.z_channels, 1) for _ in range(c.single_level + 1)
                )
        initialize_from_specs(self, specs)
        self._native_structure = module_structure(self)
        # Image sides must be multiples of the deepest encoder's total downsampling.
        self._side_multiple = c.resolution // self.level_sizes[_num_encoders(c) - 1]
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
        return _augvae_core(self.config).tokens_per_image()

    @property
    def level_sizes(self) -> list[int]:
        return _augvae_core(self.config).level_sizes()

    def extra_repr(self) -> str:
        kind = "ML" if self.config.single_level is None else f"SL(level {self.config.single_level})"
        return f"{kind}, {self.tokens_per_image} codes per {self.config.resolution}px image"

    def _tensors(self) -> dict[str, torch.Tensor]:
        return named_tensors(self)

    def _native_tensors(self, what: str) -> dict[str, torch.Tensor]:
        return native_tensors(self, _param_specs(self.config), self._native_structure, what)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] -> code ids (B, N) int64 in raster order.

        SL returns its single level; ML returns every level, finest first. Native, no
        autograd; refuses (NativePathError) a module changed by adapters, hooks or
        parametrizations, whose ``forward`` still honours them.
        """
        images = require_tensor(images, "images")
        return _augvae_core(self.config).encode(self._native_tensors("encode"), images)

    def decode(self, ids: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """Code ids (B, N) -> images (B, 3, H, W), the decoder's raw (unclamped) output.

        ``grid`` is the (h, w) of the finest level for non-square images; square by default.
        Native, no autograd, like ``encode``.
        """
        ids = require_tensor(ids, "ids")
        if grid is not None:
            if not isinstance(grid, (tuple, list)) or len(grid) != 2:
                raise ValueError(f"grid must be a pair (h, w), got {grid!r}")
            grid = (require_positive_int(grid[0], "grid height"), require_positive_int(grid[1], "grid width"))
        return _augvae_core(self.config).decode(self._native_tensors("decode"), ids, grid)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, commitment loss) with the straight-through estimator, in PyTorch.

        Every encoder reads the previous one's un-quantized output; every level is quantized
        (its commitment counts) and the returned levels are decoded. In train mode (and while
        ``ema_update``) the shared EMA codebook is updated in place after each level's
        lookup. Under ``torch.distributed`` the EMA statistics are then averaged over the
        ranks, so the codebook stays identical everywhere (the official code let it drift).
        """
        _check_images(images, self.config.in_channels, self._side_multiple, self.quantizers[0].embedding.weight)
        update = self.training and self.ema_update
        h, codes, commitment = images, [], None
        for encoder, pre_quant, quantizer in zip(self.encoders, self.pre_quants, self.quantizers, strict=False):
            h = encoder(h)
            quantized = quantizer(pre_quant(h), update)
            commitment = quantized.commitment if commitment is None else commitment + quantized.commitment
            codes.append(quantized.codes)
        image = self._decode_codes([codes[level] for level in _token_levels(self.config)])
        if update and torch.distributed.is_available() and torch.distributed.is_initialized():
            self.sync_codebook()
        return image, commitment

    def _decode_codes(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """Decodes quantized maps (one per returned level, fine to coarse)."""
        if self.config.single_level is not None:
            d = self.post_quants[0](codes[0])
            for connector, decoder in zip(self.connectors, self.decoders, strict=True):
                d = decoder(connector(d))
            return d
        # ML: coarse to fine; post_quants[i] belongs to the i-th coarsest level and each
        # decoder reads [this level's code, the upsampled result so far] on channels.
        d = None
        for i, decoder in enumerate(self.decoders):
            q = self.post_quants[i](codes[len(codes) - 1 - i])
            d = decoder(q if d is None else torch.cat([q, d], 1))
        return d

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
        embedding.renormalize()

    def save(self, path: str | os.PathLike) -> None:
        """Writes lverse's format: safetensors with the config in its metadata."""
        save_safetensors(path, "augvae", self.config.to_dict(), self._tensors(), _param_specs(self.config))

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

        specs = _param_specs(self.config)
        state = expand_tied(state, specs)
        check_state_dict(state, specs, f"{source} does not fit {self.extra_repr()}")
        self.load_state_dict(state, strict=True)


@functools.lru_cache(maxsize=16)
def _augvae_core(config: AugVAEConfig):
    """The native half for a config: configuration only, tensors come from the module on
    every call, so modules stay picklable and deep-copyable."""
    return _native.AugVaeCore(**config.to_dict())


@functools.lru_cache(maxsize=16)
def _param_specs(config: AugVAEConfig) -> tuple:
    return tuple(_augvae_core(config).param_specs())


def _num_encoders(c: AugVAEConfig) -> int:
    return c.levels if c.single_level is None else c.single_level + 1


def _token_levels(c: AugVAEConfig) -> list[int]:
    """Levels whose codes ``encode`` returns and the decoders read, fine to coarse."""
    return list(range(c.levels)) if c.single_level is None else [c.single_level]


def _kept_ml_decoders(c: AugVAEConfig) -> range:
    """Indices of the multi-level decoders present (SL keeps the fine ones, renumbered)."""
    return range(c.levels) if c.single_level is None else range(c.levels - 1 - c.single_level, c.levels)


def _shared_weight_convs(c_in: int, c_out: int, levels: int) -> nn.ModuleList:
    """1x1 convolutions, one per level, all with level 0's weight (``quant_weight_share``)."""
    convs = nn.ModuleList(nn.Conv2d(c_in, c_out, 1) for _ in range(levels))
    for conv in convs[1:]:
        conv.weight = convs[0].weight
    return convs


def _check_images(images, in_channels: int, factor: int, codebook: torch.Tensor) -> None:
    """forward's argument checks, with the native paths' messages."""
    require_tensor(images, "images")
    if images.dim() != 4 or images.shape[1] != in_channels:
        raise ValueError(f"expected images of shape (B, {in_channels}, H, W), got {list(images.shape)}")
    if images.device != codebook.device:
        raise TypeError(f"images are on {images.device} but the model is on {codebook.device}")
    autocast = torch.is_autocast_enabled(images.device.type) and images.is_floating_point()
    if images.dtype != codebook.dtype and not autocast:
        kind = kind_name(codebook.dtype)
        raise TypeError(f"expected a {kind} image tensor (the model's dtype), got {kind_name(images.dtype)}")
    h, w = images.shape[2], images.shape[3]
    if h == 0 or w == 0 or h % factor or w % factor:
        raise ValueError(f"image height and width must be positive multiples of {factor}, got {h}x{w}")
