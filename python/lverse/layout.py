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

from ._checks import require_positive_int

SPECIALS = ("PAD", "SOC", "SOI", "EOC")


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

    # -- captions ---------------------------------------------------------------------

    def caption_ids(self, token_ids: list[int]) -> list[int]:
        """Tokenizer ids -> the fixed-length caption part: words, EOC, PAD... Longer text
        is truncated (with a warning) so that EOC still fits."""
        room = self.text_len - 1
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

    def _check(self, text: torch.Tensor, image: torch.Tensor | None) -> None:
        if text.dim() != 2 or text.shape[1] != self.text_len:
            raise ValueError(f"expected caption ids of shape (B, {self.text_len}), got {tuple(text.shape)}")
        if image is not None and (image.dim() != 2 or image.shape[1] != self.image_len
                                  or image.shape[0] != text.shape[0]):
            raise ValueError(
                f"expected image ids of shape ({text.shape[0]}, {self.image_len}), got {tuple(image.shape)}"
            )

    def text_to_image(self, text: torch.Tensor, image: torch.Tensor | None = None):
        """(idx, seg) of ``[SOC] caption [SOI] image`` (image omitted: a generation prompt).
        ``image`` holds AugVAE ids (without the offset)."""
        self._check(text, image)
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
        if image.dim() != 2 or image.shape[1] != self.image_len:
            raise ValueError(f"expected image ids of shape (B, {self.image_len}), got {tuple(image.shape)}")
        if text is not None:
            self._check(text, image)
        b = image.shape[0]
        parts = [torch.full((b, 1), self.soi, dtype=torch.long, device=image.device),
                 image + self.image_offset,
                 torch.full((b, 1), self.soc, dtype=torch.long, device=image.device)]
        seg = [torch.zeros(b, self.image_len + 2, dtype=torch.long, device=image.device)]
        if text is not None:
            parts.append(text)
            seg.append(torch.ones_like(text))
        return torch.cat(parts, 1), torch.cat(seg, 1)
