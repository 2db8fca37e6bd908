"""lverse's own approximation of the Penn Treebank tokenization that the COCO caption
evaluation runs (Stanford's PTBTokenizer), for where Java or pycocoevalcap is missing.

Written from the PTB conventions, not from any tokenizer's source: the text is lowercased
and split at whitespace and around punctuation, brackets and quotes, except that a word
keeps its inner hyphens, periods and apostrophes (t-shirt, www.x.com, o'clock), a number
its inner marks (3.5, 10:30, 1,000, 1/2), and an abbreviation its period (u.s., a.m., b.,
mr., st., etc.); the clitics 's n't 're 'll 've 'm 'd are split from their word
(don't -> do n't, it's -> it 's), as are cannot, gonna, gotta, wanna, gimme and lemme
(can not, gon na). Brackets become -lrb- -rrb- -lsb- -rsb- -lcb- -rcb-, double quotes ``
and '', a lone single quote ` or ', a run of periods one ellipsis, a run of hyphens one
dash "--", and a run of ! and ? one token.

Each caption is tokenized on its own, where Stanford's lexer reads all captions as one
stream; the two agree on ordinary English captions (tests/test_caption_metrics.py compares
them on its fixture) and differ on rarer text: other abbreviations, an abbreviation at a
caption's end, fractions such as "3 1/2" (one token there), times such as "3:00pm" (two),
URLs, e-mail addresses, hashtags, emoticons, SGML, some Unicode."""

from __future__ import annotations

import re

_ABBREVIATIONS = (
    "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "inc", "ltd", "co", "corp", "mt",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
)  # fmt: skip
_TOKEN = re.compile(
    rf"""
      (?:[^\W\d_]\.)+(?![^\W_])                          # letters with periods: u.s., a.m., b.
    | (?:{"|".join(_ABBREVIATIONS)})\.(?![^\W_])         # a known abbreviation: mr., st.
    | (?:[-.](?=\d))?                                    # a word or number: t-shirt, it's, -5, .5,
      [^\W_]+(?:(?:[-'&./]|(?<=\d)[,:](?=\d))[^\W_]+)*   # 3.5, 10:30, 1,000, 1/2
    | '(?:s|re|ll|ve|m|d|n'|\d\ds?)(?![^\W_])            # a clitic by itself (the dog 's), 'n', '90s
    | \.{{2,}} | -{{2,}} | [!?]+                          # an ellipsis, a dash, !!, ?!
    | \S                                                 # any other character by itself
    """,
    re.VERBOSE,
)
_CLITICS = ("n't", "'s", "'re", "'ll", "'ve", "'m", "'d")
_SPLIT_WORDS = {
    "cannot": ("can", "not"), "gonna": ("gon", "na"), "gotta": ("got", "ta"), "wanna": ("wan", "na"),
    "gimme": ("gim", "me"), "lemme": ("lem", "me"),
}  # fmt: skip
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_NORMALIZE = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"',
        "\u2026": "...", "\u2013": "--", "\u2014": "--",
    }
)  # fmt: skip


def approximate_ptb_tokens(caption: str) -> list[str]:
    """The tokens of ``caption``, lowercased, punctuation included."""
    text = caption.translate(_NORMALIZE).lower()
    tokens: list[str] = []
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in _BRACKETS:
            tokens.append(_BRACKETS[token])
        elif token in ('"', "'"):
            before = text[match.start() - 1] if match.start() else " "
            opening = before.isspace() or before in "([{"
            tokens.append(("``" if opening else "''") if token == '"' else ("`" if opening else "'"))
        elif token[0].isalnum():
            tokens += _split_clitics(token)
        elif token.startswith("--"):
            tokens.append("--")
        else:
            tokens.append(token)
    return tokens


def _split_clitics(word: str) -> list[str]:
    if word in _SPLIT_WORDS:
        return list(_SPLIT_WORDS[word])
    for clitic in _CLITICS:
        if word.endswith(clitic) and len(word) > len(clitic):
            return [*_split_clitics(word[: -len(clitic)]), clitic]
    return [word]
