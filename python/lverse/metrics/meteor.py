"""METEOR 1.5 through the jar that pycocoevalcap ships, talked to as pycocoevalcap does.

METEOR is a Java program with its own stemmer, synonym and paraphrase tables (60 MB), so
it is not reimplemented: it runs when both ``java`` is on PATH and an installed
pycocoevalcap package holds meteor-1.5.jar and its data. Nothing is downloaded."""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

_JAR = Path("meteor") / "meteor-1.5.jar"
_PARAPHRASES = Path("meteor") / "data" / "paraphrase-en.gz"


def find_meteor_jar() -> tuple[Path | None, str | None]:
    """(the jar, None) when METEOR can run here, else (None, why not)."""
    problems, jar = [], None
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        problems.append("pycocoevalcap is not installed (pip install pycocoevalcap)")
    else:
        roots = [Path(p) for p in spec.submodule_search_locations if (Path(p) / _JAR).is_file()]
        if not roots:
            problems.append(f"the installed pycocoevalcap has no {_JAR.as_posix()}")
        elif not (roots[0] / _PARAPHRASES).is_file():
            problems.append(f"{roots[0] / _PARAPHRASES} is missing (a broken pycocoevalcap install?)")
        else:
            jar = roots[0] / _JAR
    if shutil.which("java") is None:
        problems.append("no java on PATH (METEOR is a Java program)")
    return (None, "; ".join(problems)) if problems else (jar, None)


def meteor_unavailable_reason() -> str | None:
    """Why METEOR cannot be computed here, or None when it can."""
    return find_meteor_jar()[1]


class MeteorError(RuntimeError):
    """The METEOR jar was found but did not answer as expected."""


def meteor(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> float:
    """Corpus METEOR of tokenized ``hypotheses`` against tokenized ``references``: per image
    the jar's sufficient statistics (SCORE), then one aggregate over all images (EVAL), the
    same exchange and options (-l en -norm, 2 GB heap) as pycocoevalcap's Meteor."""
    jar, reason = find_meteor_jar()
    if jar is None:
        raise MeteorError(f"METEOR is unavailable: {reason}")
    command = ["java", "-jar", "-Xmx2G", str(jar), "-", "-", "-stdio", "-l", "en", "-norm"]
    # stderr to a file, not a pipe nobody reads: a chatty JVM must not block on it.
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            command, cwd=jar.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors
        )
        try:
            stats = [
                _ask(process, errors, _score_line(refs, hyp)) for refs, hyp in zip(references, hypotheses, strict=True)
            ]
            _send(process, errors, "EVAL ||| " + " ||| ".join(stats))
            for _ in stats:  # per-image scores, not needed
                _read(process, errors)
            return _number(_read(process, errors))
        finally:
            process.kill()
            # Closing flushes what is still buffered, into a pipe the dead process no longer reads.
            with contextlib.suppress(OSError):
                process.stdin.close()
            process.wait()


def _score_line(refs: Sequence[str], hyp: str) -> str:
    # As pycocoevalcap: "|||" separates fields, so it is removed from the hypothesis.
    hyp = hyp.replace("|||", "").replace("  ", " ")
    return " ||| ".join(("SCORE", " ||| ".join(refs), hyp))


def _send(process, errors, line: str) -> None:
    try:
        # "replace": a lone surrogate from the JSON must not crash the exchange.
        process.stdin.write(line.encode(errors="replace") + b"\n")
        process.stdin.flush()
    except OSError:  # a broken pipe: the JVM is gone
        raise MeteorError(_failure(process, errors)) from None


def _read(process, errors) -> str:
    line = process.stdout.readline()
    if not line:
        raise MeteorError(_failure(process, errors))
    return line.decode().strip()


def _ask(process, errors, line: str) -> str:
    _send(process, errors, line)
    return _read(process, errors)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise MeteorError(f"METEOR answered {text!r} where a score was expected") from None


def _failure(process, errors) -> str:
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:  # alive but silent: stop it
        process.kill()
        process.wait()
    errors.seek(0)
    lines = [line for line in errors.read().decode(errors="replace").splitlines() if line.strip()]
    detail = lines[-1].strip() if lines else "no message"
    return f"METEOR (java -jar meteor-1.5.jar) stopped, exit status {process.returncode}: {detail}"
