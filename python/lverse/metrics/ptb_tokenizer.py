"""The tokenization step of the COCO caption evaluation.

pycocoevalcap writes all captions of one side (all references, or all predictions) one a
line, runs Stanford's PTBTokenizer over them (the stanford-corenlp-3.4.1.jar it ships,
``-preserveLines -lowerCase``) and drops the tokens in ``PUNCTUATIONS``. Where Java and
pycocoevalcap (>=1.2) are installed, lverse runs that same jar on the same line stream, so
its tokens are COCO's; elsewhere it stands in its own approximation (approx_tokenizer.py),
and says so: ``caption_tokenizer().exact`` is False and its ``description`` tells why."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .approx_tokenizer import approximate_ptb_tokens

# pycocoevalcap's list. Compared after lowercasing, its uppercase bracket tokens never match,
# so "-lrb-" and "-rrb-" for ( and ) stay in the scores, as in COCO's.
PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)
STANFORD = "Stanford PTBTokenizer (pycocoevalcap's jar)"
_JAR = Path("tokenizer") / "stanford-corenlp-3.4.1.jar"
_COMMAND = ("java", "-cp", _JAR.name, "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase")
# Java starts a new output line at each of these, where pycocoevalcap would then shift every
# later caption onto the wrong image; they become spaces, as pycocoevalcap does with "\n".
_LINE_BREAKS = str.maketrans(dict.fromkeys("\n\r\x0b\x0c\u2028\u2029", " "))


class TokenizerError(RuntimeError):
    """Java was found but Stanford's tokenizer did not answer as expected."""


@dataclass(frozen=True)
class CaptionTokenizer:
    """The tokenizer the metrics read: Stanford's in ``jar``, or lverse's approximation
    where ``jar`` is None; ``description`` says which, for the user."""

    description: str
    jar: Path | None = None

    @property
    def exact(self) -> bool:
        """Whether the tokens are COCO's: Stanford's tokenizer makes them."""
        return self.jar is not None

    def tokenize(self, captions: Iterable[str]) -> list[str]:
        """Each caption as pycocoevalcap's tokenizer step leaves it: tokens lowercased,
        punctuation tokens dropped, joined by single spaces (the empty string when nothing is
        left). The captions of one side go in one call, in COCO's order, as pycocoevalcap
        passes them: Stanford's lexer reads across caption ends."""
        captions = list(captions)
        if self.jar is None:
            lines = [approximate_ptb_tokens(caption) for caption in captions]
        else:
            lines = stanford_ptb_tokens(captions, self.jar)
        return [" ".join(token for token in line if token not in PUNCTUATIONS) for line in lines]


def caption_tokenizer() -> CaptionTokenizer:
    """Stanford's tokenizer where Java and pycocoevalcap's jar are here, else lverse's."""
    jar, reason = find_stanford_jar()
    if jar is not None:
        return CaptionTokenizer(STANFORD, jar)
    description = (
        f"lverse's approximate PTB tokenizer (Java or pycocoevalcap missing: {reason}); "
        "scores may differ slightly from COCO's"
    )
    return CaptionTokenizer(description)


def find_stanford_jar() -> tuple[Path | None, str | None]:
    """(pycocoevalcap's stanford-corenlp jar, None) when it can run here, else (None, why not)."""
    problems, jar = [], None
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        problems.append("pycocoevalcap is not installed")
    else:
        jars = [Path(root) / _JAR for root in spec.submodule_search_locations if (Path(root) / _JAR).is_file()]
        if jars:
            jar = jars[0]
        else:
            problems.append(f"the installed pycocoevalcap has no {_JAR.as_posix()} (pycocoevalcap>=1.2 has it)")
    if shutil.which("java") is None:
        problems.append("no java on PATH")
    return (None, "; ".join(problems)) if problems else (jar, None)


def stanford_ptb_tokens(captions: Sequence[str], jar: Path) -> list[list[str]]:
    """The tokens of each caption, lowercased, punctuation included, from Stanford's
    PTBTokenizer in ``jar``, run as pycocoevalcap runs it (through stdin, where it uses a
    temporary file inside its package: the tokens are the same)."""
    if not captions:
        return []
    text = "\n".join(caption.translate(_LINE_BREAKS) for caption in captions)
    command = " ".join(_COMMAND)
    try:
        # "replace": a lone surrogate from the JSON must not crash the exchange.
        done = subprocess.run(_COMMAND, cwd=jar.parent, input=text.encode(errors="replace"), capture_output=True)
    except OSError as err:
        raise TokenizerError(f"Stanford PTBTokenizer ({command}) did not start: {err}") from None
    if done.returncode != 0:
        errors = [line.strip() for line in done.stderr.decode(errors="replace").splitlines() if line.strip()]
        detail = errors[0] if errors else "no message"
        raise TokenizerError(f"Stanford PTBTokenizer ({command}) failed, exit status {done.returncode}: {detail}")
    lines = done.stdout.decode(errors="replace").split("\n")
    if len(lines) != len(captions):
        raise TokenizerError(
            f"Stanford PTBTokenizer ({command}) gave {len(lines)} lines for {len(captions)} captions; "
            "expected one line per caption"
        )
    # Split as pycocoevalcap splits them.
    return [line.rstrip().split(" ") for line in lines]
