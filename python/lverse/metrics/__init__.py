"""Evaluation metrics that need no model: the COCO caption metrics (captions.py)."""

from .captions import (
    METRICS,
    CaptionScores,
    check_predictions,
    load_coco_references,
    load_coco_results,
    meteor_unavailable_reason,
    score_captions,
)
from .ptb_tokenizer import CaptionTokenizer, TokenizerError, caption_tokenizer

__all__ = [
    "METRICS",
    "CaptionScores",
    "CaptionTokenizer",
    "TokenizerError",
    "caption_tokenizer",
    "load_coco_references",
    "load_coco_results",
    "meteor_unavailable_reason",
    "check_predictions",
    "score_captions",
]
