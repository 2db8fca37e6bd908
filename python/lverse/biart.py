"""BiART as a ``torch.nn.Module``: minGPT with a segment embedding, forward and sampler in
the native core."""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from . import _native
from ._checks import is_transformed, kind_name, require_field_types, require_int, require_tensor
from ._native_guard import module_structure, native_tensors
from ._params import initialize_from_specs, named_tensors
from .biart_layers import Block
from .layout import TokenLayout
from .seeds import require_seed


def _require_token_ids(stop_token, pad_token) -> None:
    for name, token in (("stop_token", stop_token), ("pad_token", pad_token)):
        if token is not None:
            require_int(token, name)


@dataclass(frozen=True)
class BiARTConfig:
    """minGPT's GPTConfig (SPEC §4). ``n_head`` cannot be read off weight shapes, so
    checkpoints carry this whole config."""

    vocab_size: int
    block_size: int
    n_layer: int = 8
    n_head: int = 8
    n_embd: int = 512
    embd_pdrop: float = 0.1
    resid_pdrop: float = 0.1
    attn_pdrop: float = 0.1

    def __post_init__(self):
        require_field_types(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> BiARTConfig:
        from .checkpoint import require_config_dict

        require_config_dict(d, cls, "BiART")
        return cls(**d)


class BiART(nn.Module):
    """One causal transformer for both directions of L-Verse.

    ``forward(idx, seg)`` returns logits (B, T, V); ``seg`` marks the conditioning part
    (0, REF) and the part being generated (1, GEN). The tree is minGPT's (2021: ``tok_emb``,
    ``pos_emb``, ``drop``, ``blocks.N`` of :class:`~lverse.biart_layers.Block`, ``ln_f``,
    ``head``) plus ``seg_emb``, so a minGPT-style state_dict loads with ``strict=True``, and
    ``forward`` is plain PyTorch: hooks, adapters, autocast, checkpointing, FSDP and
    ``torch.compile`` work as for any module. ``generate``, ``beam_search`` and
    ``cached_logits`` run lverse's native KV-cached loops on the same tensors (no copy); they
    refuse a module they cannot represent (see :class:`lverse.NativePathError`).
    """

    def __init__(self, vocab_size: int | None = None, block_size: int | None = None,
                 n_layer: int = 8, n_head: int = 8, n_embd: int = 512, *,
                 embd_pdrop: float = 0.1, resid_pdrop: float = 0.1, attn_pdrop: float = 0.1,
                 config: BiARTConfig | None = None):
        super().__init__()
        if config is None:
            if vocab_size is None or block_size is None:
                raise TypeError("BiART needs vocab_size and block_size (or a config)")
            config = BiARTConfig(vocab_size, block_size, n_layer, n_head, n_embd,
                                 embd_pdrop, resid_pdrop, attn_pdrop)
        specs = _param_specs(config)  # validates the config first
        self.config = config
        c = config
        # The layers' own default initialisation would draw from the global generator and
        # change what a seed gives; their values are replaced by the core's just below.
        with torch.random.fork_rng(devices=[]):
            self.tok_emb = nn.Embedding(c.vocab_size, c.n_embd)
            self.seg_emb = nn.Embedding(2, c.n_embd)
            self.pos_emb = nn.Parameter(torch.zeros(1, c.block_size, c.n_embd))
            self.drop = nn.Dropout(c.embd_pdrop)
            self.blocks = nn.ModuleList(
                Block(c.n_embd, c.n_head, c.block_size, c.attn_pdrop, c.resid_pdrop) for _ in range(c.n_layer)
            )
            self.ln_f = nn.LayerNorm(c.n_embd)
            self.head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        initialize_from_specs(self, specs)
        # What the native loops assume the tree to be; they refuse anything else.
        self._native_structure = module_structure(self)
        # What the ids mean; travels with the weights in save()/from_checkpoint().
        self.layout: TokenLayout | None = None
        self.tokenizer = None
        # The file's other metadata (from_checkpoint), e.g. the words seen in training.
        self.metadata: dict = {}

    @classmethod
    def for_layout(cls, layout: TokenLayout, tokenizer=None, *, n_layer: int = 8, n_head: int = 8,
                   n_embd: int = 512, **dropouts) -> BiART:
        """A BiART sized for ``layout`` (vocabulary and block size), carrying it and the
        tokenizer that produced its text ids."""
        model = cls(layout.vocab_size, layout.block_size, n_layer, n_head, n_embd, **dropouts)
        model.attach(layout, tokenizer)
        return model

    def attach(self, layout: TokenLayout | None, tokenizer=None) -> None:
        """Sets the token layout (and tokenizer) after checking they fit the model."""
        if layout is not None:
            layout.require_fits(self.config)
            if tokenizer is not None and tokenizer.vocab_size != layout.text_vocab:
                raise ValueError(
                    f"tokenizer has {tokenizer.vocab_size} ids but the layout's text vocabulary is {layout.text_vocab}"
                )
        self.layout, self.tokenizer = layout, tokenizer

    def extra_repr(self) -> str:
        c = self.config
        return (f"vocab={c.vocab_size}, block={c.block_size}, layers={c.n_layer}, "
                f"heads={c.n_head}, width={c.n_embd}")

    def _tensors(self) -> dict[str, torch.Tensor]:
        return named_tensors(self)

    def _native_tensors(self, what: str) -> dict[str, torch.Tensor]:
        return native_tensors(self, _param_specs(self.config), self._native_structure, what)

    def forward(self, idx: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, vocab) for token ids and segment ids, both int64 (B, T)."""
        _check_ids(idx, seg, self.config, self.pos_emb.device)
        t = idx.shape[1]
        x = self.drop(self.tok_emb(idx) + self.seg_emb(seg) + self.pos_emb[:, :t])
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, seg: torch.Tensor, steps: int, *, greedy: bool = False,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 seed: int | Sequence[int] | None = None, token_range: tuple[int, int] | list | None = None,
                 stop_token: int | None = None, pad_token: int = 0,
                 progress: Callable[[int, int], object] | None = None) -> torch.Tensor:
        """Continues each prefix row by ``steps`` tokens -> LongTensor (B, steps).

        Generated tokens get segment 1. Temperature, top-k and top-p apply in that order;
        ``token_range=(lo, hi)`` restricts ids to [lo, hi) (a list of such pairs allows
        their union). A row that emits ``stop_token``
        is finished and padded with ``pad_token``. ``seed`` makes the draw reproducible on
        the same device: an int seeds the batch as one stream; a sequence of B ints gives
        each row its own stream, so that a row's tokens do not depend on the rows sampled
        beside it. ``progress(done, total)`` is called after every step.
        """
        require_tensor(idx, "idx")
        require_tensor(seg, "seg")
        require_int(steps, "steps")
        if progress is not None and not callable(progress):
            raise TypeError(f"progress must be callable as progress(done, total), got {type(progress).__name__}")
        _require_token_ids(stop_token, pad_token)
        if top_k is not None:
            require_int(top_k, "top_k")
            if top_k < 1:
                raise ValueError(f"top_k must be >= 1, got {top_k}")
        row_seeds = None
        if isinstance(seed, (list, tuple)):
            row_seeds, seed = [require_seed(value, f"seed[{i}]") for i, value in enumerate(seed)], None
        elif seed is not None:
            seed = require_seed(seed)
        return _biart_core(self.config).generate(
            self._native_tensors("sampler (generate)"), idx, seg, steps, greedy=greedy, temperature=float(temperature),
            top_k=top_k, top_p=None if top_p is None else float(top_p), seed=seed,
            token_range=_ranges(token_range), stop_token=stop_token, pad_token=pad_token,
            progress=progress,
            # Only the main thread runs signal handlers, so only there is Ctrl-C worth a check.
            interruptible=threading.current_thread() is threading.main_thread(), row_seeds=row_seeds,
        )

    @torch.no_grad()
    def cached_logits(self, idx: torch.Tensor, seg: torch.Tensor, prefix: int = 1) -> torch.Tensor:
        """Logits computed token by token through the KV cache, as the sampler sees them:
        (B, T - prefix + 1, V), equal to ``forward(idx, seg)[:, prefix - 1:]`` up to rounding."""
        require_tensor(idx, "idx")
        require_tensor(seg, "seg")
        require_int(prefix, "prefix")
        return _biart_core(self.config).cached_logits(self._native_tensors("cached_logits"), idx, seg, prefix)

    @torch.no_grad()
    def beam_search(self, idx: torch.Tensor, seg: torch.Tensor, steps: int, *, beams: int = 4,
                    token_range: tuple[int, int] | list | None = None, stop_token: int | None = None,
                    pad_token: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Best of ``beams`` beams per row: (tokens (B, steps), summed log-prob (B))."""
        require_tensor(idx, "idx")
        require_tensor(seg, "seg")
        require_int(steps, "steps")
        require_int(beams, "beams")
        _require_token_ids(stop_token, pad_token)
        if beams < 1:
            raise ValueError(f"beams must be >= 1, got {beams}")
        return _biart_core(self.config).beam_search(
            self._native_tensors("beam_search"), idx, seg, steps, beams=beams,
            token_range=_ranges(token_range), stop_token=stop_token, pad_token=pad_token,
            # As in generate: Ctrl-C stops it, checked only where signal handlers run.
            interruptible=threading.current_thread() is threading.main_thread())

    def save(self, path: str | os.PathLike, metadata: dict | None = None) -> None:
        """Writes safetensors carrying the config, the token layout and the tokenizer
        (``n_head`` cannot be read off shapes, nor the meaning of an id), plus any extra
        JSON-able ``metadata``."""
        from .checkpoint import save_safetensors

        extra = dict(metadata or {})
        if self.layout is not None:
            extra["layout"] = self.layout.to_dict()
        if self.tokenizer is not None:
            extra["tokenizer"] = self.tokenizer.to_json()
        save_safetensors(path, "biart", self.config.to_dict(), self._tensors(),
                         _param_specs(self.config), extra=extra)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, map_location="cpu") -> BiART:
        """Loads an lverse BiART file with its layout and tokenizer; eval mode. The file's
        other metadata is in ``model.metadata``."""
        from .checkpoint import CONFIG_KEY, blamed_on_file, load_biart_checkpoint

        config, state, extra = load_biart_checkpoint(path)
        with blamed_on_file(path, f"the {CONFIG_KEY} metadata is not a valid BiART config"):
            model = cls(config=BiARTConfig.from_dict(config))
        model.load_checked(state, source=str(path))
        extra = dict(extra)
        _attach_from_metadata(model, extra, path)
        model.metadata = extra
        return model.to(map_location).eval()

    def load_checked(self, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
        from .checkpoint import check_state_dict

        check_state_dict(state, _param_specs(self.config), f"{source} does not fit BiART({self.extra_repr()})")
        self.load_state_dict(state, strict=True)


def _attach_from_metadata(model: BiART, extra: dict, path) -> None:
    """Attaches the token layout and tokenizer stored in a file's extra metadata, taking
    them out of ``extra``; a bad one is the file's fault, so the error names the file."""
    from .checkpoint import EXTRA_KEY, blamed_on_file, require_config_dict
    from .tokenizer import Tokenizer

    layout = tokenizer = None
    if "layout" in extra:
        with blamed_on_file(path, f"the layout in {EXTRA_KEY} is not a token layout"):
            require_config_dict(extra["layout"], TokenLayout, "token layout")
            layout = TokenLayout(**extra.pop("layout"))
    if "tokenizer" in extra:
        with blamed_on_file(path, f"the tokenizer in {EXTRA_KEY} is not readable"):
            tokenizer = Tokenizer.from_json(extra.pop("tokenizer"))
    with blamed_on_file(path, "the stored layout or tokenizer does not fit the model"):
        model.attach(layout, tokenizer)


def _ranges(token_range) -> list[tuple[int, int]]:
    """``None``, one ``(lo, hi)`` or a list of them -> a list of ranges."""
    if token_range is None:
        return []
    if len(token_range) == 2 and all(isinstance(v, int) for v in token_range):
        return [tuple(token_range)]
    return [tuple(r) for r in token_range]


@functools.lru_cache(maxsize=16)
def _biart_core(config: BiARTConfig):
    """The native half for a config: it holds only the configuration (the tensors come from
    the module on every call), so modules stay picklable and deep-copyable."""
    return _native.BiartCore(**config.to_dict())


@functools.lru_cache(maxsize=16)
def _param_specs(config: BiARTConfig) -> tuple:
    return tuple(_biart_core(config).param_specs())


def _check_ids(idx, seg, config: BiARTConfig, device: torch.device) -> None:
    """forward's argument checks, with the native paths' messages."""
    require_tensor(idx, "idx")
    require_tensor(seg, "seg")
    if idx.dim() != 2:
        raise ValueError(f"expected token ids of shape (B, T), got {list(idx.shape)}")
    if seg.shape != idx.shape:
        raise ValueError(f"segment ids must have the token ids' shape {list(idx.shape)}, got {list(seg.shape)}")
    for what, t in (("token", idx), ("segment", seg)):
        if t.dtype != torch.int64:
            raise TypeError(f"expected int64 {what} ids, got {kind_name(t.dtype)}")
        if t.device != device:
            raise TypeError(f"{what} ids are on {t.device} but the model is on {device}")
    if idx.shape[1] > config.block_size:
        raise ValueError(f"sequence of {idx.shape[1]} tokens exceeds the block size {config.block_size}")
    # Values are read only from plain tensors in eager mode: compiled graphs must not sync,
    # and functorch wrappers, FakeTensors and meta tensors have no values to read.
    plain = type(idx) is torch.Tensor and type(seg) is torch.Tensor and not idx.is_meta
    if torch.compiler.is_compiling() or not plain or is_transformed(idx) or idx.numel() == 0:
        return
    # One host sync for the four extremes (a GPU forward would otherwise wait four times).
    low, high, seg_low, seg_high = torch.stack([idx.min(), idx.max(), seg.min(), seg.max()]).tolist()
    if low < 0 or high >= config.vocab_size:
        raise ValueError(f"token id {low if low < 0 else high} is outside the vocabulary [0, {config.vocab_size})")
    low, high = seg_low, seg_high
    if low < 0 or high > 1:
        raise ValueError(f"segment id {low if low < 0 else high} is not 0 (REF) or 1 (GEN)")
