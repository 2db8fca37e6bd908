"""What the paper measures, on a user's own held-out pairs (``python -m lverse eval --data``):

* image to text: captions of the held-out images scored against their reference captions
  by BLEU-1..4, METEOR, ROUGE-L and CIDEr (``lverse.metrics.captions``), and how many match
  a reference exactly;
* text to image: one image generated from each held-out image's first caption, FID against
  the held-out images (and DALL-E's blurred FID-k for each ``blur`` radius);
* the AugVAE: reconstruction PSNR of the held-out images and rFID (reconstructions against
  the originals).

Held out means the last ``held_out`` distinct images of the data source, as
``train-biart --held-out`` (and ``tokenize``'s order) leave them out of training. Images
are compared at the model's resolution (shorter side resized, center crop, as encoded).
"""

from __future__ import annotations

import logging

import torch

from . import images as image_io
from .data.sources import HELD_OUT_DEFAULT, from_spec, load_readable, split_held_out
from .pipeline import LVerse

log = logging.getLogger("lverse.eval")


def held_out_split(model: LVerse, spec: str, requested: int | None) -> tuple[int, int | None]:
    """(images to score, of the first how many images of ``spec``): what the model's training
    held out (recorded in its metadata as ``held_out``) when it trained on ``spec``; a larger
    request would score images it trained on, and is refused."""
    record = model.biart.metadata.get("held_out")
    if not isinstance(record, dict) or record.get("data") != spec:
        return (HELD_OUT_DEFAULT if requested is None else requested), None
    held, of = int(record["images"]), int(record["of"])
    if requested is not None and requested > held:
        raise ValueError(f"--held-out {requested}: the model held out only the last {held} of the first {of} images "
                         f"of {spec} from training; scoring more would score images it trained on")
    return (held if requested is None else requested), of


def held_out_pairs(spec: str, size: int, count: int,
                   of: int | None = None) -> tuple[torch.Tensor, list[list[str]], list[str]]:
    """(images (N, 3, size, size) in [-1, 1], their reference captions, their names) of the
    last ``count`` of the first ``of`` (default: all) distinct images of ``spec``; unreadable
    ones are left out."""
    source = from_spec(spec, size)
    if source.procedural:
        raise ValueError(f"eval --data needs a finite data source (captions:DIR, coco:JSON:IMAGE_DIR, folder:DIR); "
                         f"{spec!r} has no held-out end (for shapes scenes, run eval without --data)")
    total = source.image_count() if of is None else min(of, source.image_count())
    _, held = split_held_out(source, min(count, total), images=total)
    entries = [source.image_entry(index) for index in held]
    pixels, kept, unreadable = load_readable([image for image, _, _ in entries], size)
    for position, reason in unreadable:
        log.warning("skipping unreadable held-out image %s: %s", entries[position][2], reason)
    if not kept:
        raise ValueError(f"none of the last {len(held)} images of {spec} is readable")
    return pixels, [entries[k][1] for k in kept], [entries[k][2] for k in kept]


@torch.inference_mode()
def evaluate_on_data(model: LVerse, spec: str, *, held_out: int | None = None, blur=(0,), candidates: int = 8,
                     caption_candidates: int = 16, seed: int = 0, fid: bool = True, meteor: bool | None = None,
                     batch_size: int = 16) -> dict:
    """The measures above, as one JSON-able dict (a measure that cannot be taken is None,
    with the reason under ``<name>_unavailable``). ``held_out`` defaults to what the model's
    training held out of ``spec`` (64 when it did not train on ``spec``)."""
    size = model.vae.config.resolution
    count, of = held_out_split(model, spec, held_out)
    x, references, names = held_out_pairs(spec, size, count, of)
    device = model.device
    recon = torch.cat([model.vae.decode(model.vae.encode(b.to(device))).cpu() for b in x.split(batch_size)])
    result: dict = {"data": spec, "held_out_images": len(x), "augvae_psnr_db": image_io.psnr(x, recon).mean().item()}
    captioned = [i for i, refs in enumerate(references) if refs]
    result["captioned_images"] = len(captioned)
    real = image_io.to_pil(x)
    if captioned:
        predicted = []
        for start in range(0, len(captioned), batch_size):
            chunk = [real[i] for i in captioned[start:start + batch_size]]
            predicted += model.caption(chunk, candidates=caption_candidates, seed=seed)
        result.update(_caption_scores(predicted, [references[i] for i in captioned], meteor))
        result["examples"] = [{"image": names[i], "predicted": p, "references": references[i]}
                              for i, p in zip(captioned[:4], predicted[:4], strict=False)]
    unavailable = _fid_unavailable(fid, len(x))
    if unavailable:
        result["rfid"] = result["fid"] = None
        result["fid_unavailable"] = unavailable
    else:
        from .metrics import fid as fid_metric

        result["rfid"] = fid_metric.fid_between_images(image_io.to_pil(recon), real)[0]
        if captioned:
            generated, prompts = _generate(model, [references[i][0] for i in captioned], candidates, seed, result)
            if len(generated) >= 2:
                kept = [real[i] for i, ok in zip(captioned, prompts, strict=True) if ok]
                scores = fid_metric.fid_between_images(generated, kept, blur=tuple(blur))
                result["fid"] = {str(radius): value for radius, value in scores.items()}
            else:
                result["fid"] = None
                result["fid_unavailable"] = "fewer than 2 held-out captions use only words the model knows"
    return result


def _fid_unavailable(wanted: bool, images: int) -> str | None:
    if not wanted:
        return "skipped (--no-fid)"
    if images < 2:
        return f"FID needs at least 2 images, the held-out set has {images}"
    from .metrics import fid as fid_metric

    try:
        fid_metric._fid_helper()
    except ModuleNotFoundError as err:
        return str(err)
    return None


def _caption_scores(predicted: list[str], references: list[list[str]], meteor: bool | None) -> dict:
    from .metrics import captions as caption_metrics

    refs = {i: r for i, r in enumerate(references)}
    preds = dict(enumerate(predicted))
    scores = caption_metrics.score_captions(refs, preds, meteor=meteor)
    out = {"captions": {name: scores.get(name) for name in caption_metrics.METRICS},
           "caption_tokenizer": scores.tokenizer,
           "caption_exact_match": sum(p in r for p, r in zip(predicted, references, strict=True)) / len(predicted)}
    if "METEOR" not in scores:
        out["METEOR_unavailable"] = ("skipped" if meteor is False
                                     else caption_metrics.meteor_unavailable_reason() or "not computed")
    return out


def _generate(model: LVerse, prompts: list[str], candidates: int, seed: int, result: dict):
    """One image per prompt the model can read (a prompt with words never seen in training
    is left out and counted: the model refuses it)."""
    known = model.known_words
    usable = [known is None or all(w in known for w in p.lower().split()) for p in prompts]
    result["generated_prompts"] = sum(usable)
    result["prompts_with_unknown_words"] = len(prompts) - sum(usable)
    texts = [p for p, ok in zip(prompts, usable, strict=True) if ok]
    pictures = []
    for start in range(0, len(texts), 16):
        pictures += [group[0] for group in model.generate(texts[start:start + 16], n=1, candidates=candidates,
                                                          seed=seed + start)]
    return pictures, usable
