"""BiART's text tokenizer: CLIP's byte-level BPE on Hugging Face's ``tokenizers`` crate.

``Tokenizer.from_clip_bpe(path)`` loads CLIP's ``bpe_simple_vocab_16e6.txt.gz`` with CLIP's
ids (49408 tokens); ``Tokenizer.train(texts, vocab_size)`` learns a vocabulary of the same
layout from captions (deterministically); ``save``/``from_file`` and ``to_json``/``from_json``
store it as tokenizer.json, e.g. inside a checkpoint. Text is NFC-normalised, curly quotes
are straightened, whitespace is collapsed and letters lowercased, so ``decode(encode(text))``
gives back lowercase text with a space after each word and punctuation run. CLIP also runs
ftfy and HTML unescaping first; those repairs are not made here (clean such text beforehand
if it matters), otherwise the ids are CLIP's.

>>> tok = Tokenizer.from_clip_bpe("bpe_simple_vocab_16e6.txt.gz")  # doctest: +SKIP
>>> tok.encode("a photo of a cat", add_special_tokens=True)  # doctest: +SKIP
[49406, 320, 1125, 539, 320, 2368, 49407]
"""

from __future__ import annotations

import copyreg

from ._native import Tokenizer

__all__ = ["Tokenizer"]


def _from_json(text: str) -> Tokenizer:
    return Tokenizer.from_json(text)


def _reduce(tokenizer: Tokenizer):
    # The native class has no pickle support of its own; its JSON form is complete, so
    # pickle, deepcopy and torch.save(model) of a BiART carrying one all go through it.
    return _from_json, (tokenizer.to_json(),)


copyreg.pickle(Tokenizer, _reduce)
