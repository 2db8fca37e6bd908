"""COCO caption metrics offline: BLEU-1..4, METEOR, ROUGE-L and CIDEr(-D), computed as the
COCO caption evaluation (pycocoevalcap) computes them.

Pure Python but METEOR, which needs Java and pycocoevalcap's jar (meteor.py), and the
tokenization, which runs pycocoevalcap's Stanford tokenizer jar where Java and pycocoevalcap
are here, and otherwise lverse's approximation of it (ptb_tokenizer.py); the scores say
which (``scores.tokenizer``).

    refs = load_coco_references("captions_val2014.json")
    preds = load_coco_results("results.json")
    scores = score_captions(refs, preds)   # {"Bleu_1": ..., "METEOR": ..., "CIDEr": ...}
    scores.tokenizer                       # "Stanford PTBTokenizer (pycocoevalcap's jar)"
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import meteor as _meteor
from .bleu import corpus_bleu
from .cider import cider_d
from .ptb_tokenizer import caption_tokenizer
from .rouge import mean_rouge_l

ImageId = int | str
# pycocoevalcap's names for the metrics, in its order.
METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
_SHOWN_IDS = 5


class CaptionScores(dict[str, float]):
    """The scores by metric name (a dict), and the tokenizer they were computed with:
    ``tokenizer`` says which, ``exact_tokenization`` is False where lverse's approximation
    stood in for Stanford's (no Java or no pycocoevalcap), whose scores may differ slightly."""

    def __init__(self, scores: Mapping[str, float], *, tokenizer: str, exact_tokenization: bool):
        super().__init__(scores)
        self.tokenizer = tokenizer
        self.exact_tokenization = exact_tokenization

    def __repr__(self) -> str:
        return f"CaptionScores({dict.__repr__(self)}, tokenizer={self.tokenizer!r})"


def score_captions(
    references: Mapping[ImageId, Sequence[str]], predictions: Mapping[ImageId, str], *, meteor: bool | None = None
) -> CaptionScores:
    """The COCO caption metrics of ``predictions`` (one caption per image id) against
    ``references`` (each image id's reference captions), over the predicted images.

    ``meteor``: None computes METEOR when it can run here and leaves it out otherwise
    (``meteor_unavailable_reason()`` says why); True requires it; False skips it.
    CIDEr's document frequencies come from the references of the predicted images only,
    as in pycocoevalcap, so scoring a subset is not the subset of a full score.
    Raises TokenizerError (MeteorError) when Java is here but the tokenizer (METEOR) fails."""
    check_predictions(references, predictions)
    if meteor is None:
        meteor = _meteor.meteor_unavailable_reason() is None
    # The references' order, as COCO evaluates (by its images list): the tokenizer reads
    # each side as one stream, and a caption's end can depend on the next one's start.
    ids = [image_id for image_id in references if image_id in predictions]
    counts = [len(references[i]) for i in ids]
    tokenizer = caption_tokenizer()
    flat = tokenizer.tokenize(caption for i in ids for caption in references[i])
    refs, start = [], 0
    for count in counts:
        refs.append(flat[start : start + count])
        start += count
    hyps = tokenizer.tokenize(predictions[i] for i in ids)
    scores = dict(zip(METRICS[:4], corpus_bleu(refs, hyps), strict=True))
    if meteor:
        scores["METEOR"] = _meteor.meteor(refs, hyps)
    scores["ROUGE_L"] = mean_rouge_l(refs, hyps)
    scores["CIDEr"] = cider_d(refs, hyps)
    return CaptionScores(scores, tokenizer=tokenizer.description, exact_tokenization=tokenizer.exact)


def meteor_unavailable_reason() -> str | None:
    """Why METEOR cannot be computed here (no Java, no pycocoevalcap), or None."""
    return _meteor.meteor_unavailable_reason()


def load_coco_references(path: str | Path) -> dict[ImageId, list[str]]:
    """Each image's reference captions from a COCO captions annotations file:
    ``{"images": [{"id": ...}, ...], "annotations": [{"image_id": ..., "caption": ...}, ...]}``.
    Images come in the order of "images" (of first annotation, without "images"), so in
    the order pycocotools gives them. Raises ValueError naming the file and the problem."""
    data = _read_json(path)
    if not isinstance(data, dict) or "annotations" not in data:
        hint = "; is it a results file?" if isinstance(data, list) else ""
        raise ValueError(
            f"{path}: expected a COCO captions annotations file, a JSON object with an "
            f'"annotations" list, got {_describe(data)}{hint}'
        )
    annotations = data["annotations"]
    if not isinstance(annotations, list):
        raise ValueError(f'{path}: "annotations" is {_describe(annotations)}; expected a list')
    if not annotations:
        raise ValueError(f'{path}: "annotations" is empty; expected reference captions')
    references: dict[ImageId, list[str]] = {}
    images = data.get("images")
    if images is not None:
        if not isinstance(images, list):
            raise ValueError(f'{path}: "images" is {_describe(images)}; expected a list of {{"id": ...}}')
        for index, image in enumerate(images):
            if not isinstance(image, dict) or "id" not in image:
                raise ValueError(f'{path}: images[{index}] is {_describe(image)}; expected an object with an "id"')
            references.setdefault(_image_id(image["id"], path, f"images[{index}].id"), [])
    for index, entry in enumerate(annotations):
        image_id, caption = _entry(entry, path, f"annotations[{index}]")
        if images is not None and image_id not in references:
            raise ValueError(f'{path}: annotations[{index}] is for image_id {image_id!r}, which "images" does not list')
        references.setdefault(image_id, []).append(caption)
    return references


def load_coco_results(path: str | Path) -> dict[ImageId, str]:
    """The predicted caption of each image from a COCO results file:
    ``[{"image_id": ..., "caption": ...}, ...]``, one entry per image. Raises ValueError
    naming the file and the problem (including an image predicted twice)."""
    data = _read_json(path)
    if not isinstance(data, list):
        hint = "; is it an annotations file?" if isinstance(data, dict) and "annotations" in data else ""
        raise ValueError(
            f"{path}: expected a COCO results file, a JSON list of "
            f'{{"image_id": ..., "caption": ...}}, got {_describe(data)}{hint}'
        )
    if not data:
        raise ValueError(f'{path}: no predictions (an empty list); expected [{{"image_id": ..., "caption": ...}}, ...]')
    predictions: dict[ImageId, str] = {}
    first_entry: dict[ImageId, int] = {}
    for index, entry in enumerate(data):
        image_id, caption = _entry(entry, path, f"entry {index}")
        if image_id in predictions:
            raise ValueError(
                f"{path}: image_id {image_id!r} is predicted twice (entries {first_entry[image_id]} "
                f"and {index}); expected one caption per image"
            )
        predictions[image_id] = caption
        first_entry[image_id] = index
    return predictions


def check_predictions(
    references: Mapping[ImageId, Sequence[str]],
    predictions: Mapping[ImageId, str],
    *,
    references_name: str = "the references",
    predictions_name: str = "the predictions",
) -> None:
    """Raise ValueError (TypeError for wrong Python types) unless ``predictions`` can be
    scored against ``references``: at least one prediction, each of an image that has
    reference captions. The names (file paths, say) go into the messages."""
    if not predictions:
        raise ValueError(f"{predictions_name}: no predictions to score")
    unknown = [image_id for image_id in predictions if image_id not in references]
    if unknown:
        shown = ", ".join(repr(i) for i in unknown[:_SHOWN_IDS])
        more = f" and {len(unknown) - _SHOWN_IDS} more" if len(unknown) > _SHOWN_IDS else ""
        raise ValueError(
            f"{predictions_name}: {len(unknown)} predicted image id(s) not in {references_name}: "
            f"{shown}{more}; expected only images that have reference captions"
        )
    for image_id, caption in predictions.items():
        if not isinstance(caption, str):
            raise TypeError(
                f"{predictions_name}: the caption of image {image_id!r} is a {type(caption).__name__}; "
                "expected a string"
            )
        refs = references[image_id]
        # A bare string is a sequence of strings too, and would be scored letter by letter.
        if isinstance(refs, str) or not all(isinstance(r, str) for r in refs):
            raise TypeError(
                f"{references_name}: the references of image {image_id!r} must be a list of strings, got {refs!r:.60}"
            )
        if not refs:
            raise ValueError(
                f"{references_name}: image {image_id!r} has no reference captions, but "
                f"{predictions_name} has a prediction for it"
            )


def _read_json(path: str | Path):
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory; expected a JSON file") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); expected JSON") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except OSError as err:
        raise ValueError(f"{path}: cannot read it: {err.strerror or err}") from None


def _entry(entry, path, where: str) -> tuple[ImageId, str]:
    if not isinstance(entry, dict) or "image_id" not in entry or "caption" not in entry:
        raise ValueError(f'{path}: {where} is {_describe(entry)}; expected an object with "image_id" and "caption"')
    caption = entry["caption"]
    if not isinstance(caption, str):
        raise ValueError(f"{path}: {where} has a caption that is {_describe(caption)}; expected a string")
    return _image_id(entry["image_id"], path, f"{where} image_id"), caption


def _image_id(value, path, where: str) -> ImageId:
    # bool is an int in Python, and a float id would equal an int one as a dict key.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{path}: {where} is {_describe(value)}; expected an integer or a string")
    return value


def _describe(value) -> str:
    """A JSON value's kind, and the value itself when short, for error messages."""
    kind = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)
    text = json.dumps(value)
    return f"{kind} ({text})" if len(text) <= 40 else kind
