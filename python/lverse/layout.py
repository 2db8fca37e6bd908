"""BiART's token layout (SPEC §7): one table holding text ids, then image ids, then the
special tokens, and the two sequence orders built from it.

    ids [0, T)            text tokens (the tokenizer's ids)
    ids [T, T + I)        image codes (AugVAE ids offset by T)
    T + I + 0..3          PAD, SOC (start of caption), SOI (start of image), EOC (end of caption)

Text to image: ``[SOC] caption [SOI] image``; image to text: ``[SOI] image [SOC] caption``.
The conditioning part has segment 0 (REF), the generated part segment 1 (GEN). A caption
part always holds ``text_len`` tokens: the words, EOC, then PAD.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import torch

from ._checks import require_int, require_positive_int, require_tensor

SPECIALS = ("PAD", "SOC", "SOI", "EOC")


def _require_ids(ids, what: str, length: int, batch: int | None = None) -> None:
    """An int64 tensor of shape (batch, length) (any batch when None)."""
    require_tensor(ids, what)
    if ids.dtype != torch.long:
        raise TypeError(f"{what} must be int64, got {ids.dtype}")
    rows = "B" if batch is None else batch
    if ids.dim() != 2 or ids.shape[1] != length or (batch is not None and ids.shape[0] != batch):
        raise ValueError(f"expected {what} of shape ({rows}, {length}), got {tuple(ids.shape)}")


@dataclass(frozen=True)
class TokenLayout:
    text_vocab: int
    image_vocab: int
    text_len: int
    image_len: int

    def __post_init__(self):
        for name in ("text_vocab", "image_vocab", "text_len", "image_len"):
            require_positive_int(getattr(self, name), name)
        if self.text_len < 2:
            raise ValueError(f"text_len must leave room for a word and EOC, got {self.text_len}")

    @property
    def image_offset(self) -> int:
        return self.text_vocab

    @property
    def pad(self) -> int:
        return self.text_vocab + self.image_vocab

    @property
    def soc(self) -> int:
        return self.pad + 1

    @property
    def soi(self) -> int:
        return self.pad + 2

    @property
    def eoc(self) -> int:
        return self.pad + 3

    @property
    def vocab_size(self) -> int:
        return self.pad + len(SPECIALS)

    @property
    def block_size(self) -> int:
        return 2 + self.text_len + self.image_len

    @property
    def image_range(self) -> tuple[int, int]:
        return (self.image_offset, self.image_offset + self.image_vocab)

    @property
    def caption_ranges(self) -> list[tuple[int, int]]:
        """Legal ids inside a caption: the text ids and EOC."""
        return [(0, self.text_vocab), (self.eoc, self.eoc + 1)]

    def to_dict(self) -> dict:
        return asdict(self)

    def require_fits(self, config) -> None:
        """A model with ``config`` (a BiARTConfig) reads this layout: the same vocabulary, and
        sequences that fit its block."""
        if self.vocab_size != config.vocab_size or self.block_size > config.block_size:
            raise ValueError(
                f"layout needs vocab_size {self.vocab_size} and block_size >= {self.block_size}, "
                f"the model has {config.vocab_size} and {config.block_size}"
            )

    # -- captions ---------------------------------------------------------------------

    def caption_ids(self, token_ids: list[int]) -> list[int]:
        """Tokenizer ids -> the fixed-length caption part: words, EOC, PAD... Longer text
        is truncated (with a warning) so that EOC still fits."""
        room = self.text_len - 1
        for t in token_ids:
            require_int(t, "text id")
        bad = [t for t in token_ids if not 0 <= t < self.text_vocab]
        if bad:
            raise ValueError(f"text id {bad[0]} is outside the text vocabulary [0, {self.text_vocab})")
        if len(token_ids) > room:
            warnings.warn(
                f"caption of {len(token_ids)} tokens truncated to {room} (text_len {self.text_len} "
                "includes the end-of-caption token)",
                stacklevel=3,
            )
            token_ids = token_ids[:room]
        return list(token_ids) + [self.eoc] + [self.pad] * (room - len(token_ids))

    def caption_tokens(self, caption_part: list[int]) -> list[int]:
        """The tokenizer ids of a caption part: everything before EOC, specials dropped."""
        out = []
        for t in caption_part:
            if t == self.eoc:
                break
            if 0 <= t < self.text_vocab:
                out.append(t)
        return out

    def encode_captions(self, tokenizer, texts) -> torch.Tensor:
        """Texts -> caption parts (B, text_len): tokenizer ids, EOC, PAD (truncating with
        a warning). Empty or non-string text raises as the tokenizer does."""
        if isinstance(texts, str):
            texts = [texts]
        if tokenizer.vocab_size != self.text_vocab:
            raise ValueError(
                f"tokenizer has {tokenizer.vocab_size} ids but the layout's text vocabulary is {self.text_vocab}"
            )
        rows = [self.caption_ids(ids) for ids in tokenizer.encode_batch(list(texts))]
        return torch.tensor(rows, dtype=torch.long).view(len(rows), self.text_len)

    def decode_captions(self, tokenizer, parts: torch.Tensor) -> list[str]:
        """Caption parts (B, text_len) -> texts: words up to EOC, special tokens dropped."""
        return [tokenizer.decode(self.caption_tokens(row)) for row in parts.tolist()]

    # -- sequences --------------------------------------------------------------------

    def check_caption_ids(self, text) -> None:
        """Caption parts (B, text_len), int64, holding text ids, EOC or PAD."""
        _require_ids(text, "caption ids", self.text_len)
        legal = ((text >= 0) & (text < self.text_vocab)) | (text == self.eoc) | (text == self.pad)
        if not legal.all():
            bad = text[~legal][0].item()
            raise ValueError(f"caption id {bad} is neither a text id in [0, {self.text_vocab}) "
                             f"nor EOC ({self.eoc}) or PAD ({self.pad})")

    def check_image_ids(self, image, batch: int | None = None) -> None:
        """AugVAE ids (B, image_len), int64, in [0, image_vocab) (without the offset)."""
        _require_ids(image, "image ids", self.image_len, batch)
        if image.numel() and (image.min() < 0 or image.max() >= self.image_vocab):
            bad = image.min().item() if image.min() < 0 else image.max().item()
            raise ValueError(f"image id {bad} is outside the image vocabulary [0, {self.image_vocab})")

    def text_to_image(self, text: torch.Tensor, image: torch.Tensor | None = None):
        """(idx, seg) of ``[SOC] caption [SOI] image`` (image omitted: a generation prompt).
        ``image`` holds AugVAE ids (without the offset)."""
        self.check_caption_ids(text)
        if image is not None:
            self.check_image_ids(image, text.shape[0])
        b = text.shape[0]
        parts = [torch.full((b, 1), self.soc, dtype=torch.long, device=text.device), text,
                 torch.full((b, 1), self.soi, dtype=torch.long, device=text.device)]
        seg = [torch.zeros(b, self.text_len + 2, dtype=torch.long, device=text.device)]
        if image is not None:
            parts.append(image + self.image_offset)
            seg.append(torch.ones_like(image))
        return torch.cat(parts, 1), torch.cat(seg, 1)

    def image_to_text(self, image: torch.Tensor, text: torch.Tensor | None = None):
        """(idx, seg) of ``[SOI] image [SOC] caption`` (caption omitted: a prompt)."""
        self.check_image_ids(image)
        if text is not None:
            self.check_caption_ids(text)
            if text.shape[0] != image.shape[0]:
                raise ValueError(f"{text.shape[0]} captions for {image.shape[0]} images")
        b = image.shape[0]
        parts = [torch.full((b, 1), self.soi, dtype=torch.long, device=image.device),
                 image + self.image_offset,
                 torch.full((b, 1), self.soc, dtype=torch.long, device=image.device)]
        seg = [torch.zeros(b, self.image_len + 2, dtype=torch.long, device=image.device)]
        if text is not None:
            parts.append(text)
            seg.append(torch.ones_like(text))
        return torch.cat(parts, 1), torch.cat(seg, 1)
