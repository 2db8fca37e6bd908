"""Encoding a data source once into code shards (see :mod:`lverse.data.codes`).

Images are read a batch ahead on a worker thread (a list of files is decoded in parallel
natively) while the AugVAE encodes the current batch; every distinct image is encoded once
(a COCO image with five captions gives one row holding the five). Shards are numbered and
cover consecutive entries, so a run that was killed resumes after the last shard its
manifest lists and ends with exactly the items an uninterrupted run gives.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from tqdm import tqdm

from .. import images as image_io
from ..augvae import AugVAE
from ..progress import progress_enabled
from .codes import (
    FORMAT,
    MANIFEST,
    code_dtype,
    file_hash,
    read_manifest,
    shard_name,
    weights_hash,
    write_json_atomically,
    write_shard,
)
from .sources import Source, load_readable

log = logging.getLogger("lverse.data")

# The settings a resumed run must share with the run that started the directory.
SAME_SETTINGS = ("data", "weights_sha256", "image_size", "trip", "entries", "shard_size", "listing_sha256")


def _load_batch(source: Source, indices: list[int], size: int):
    """(pixels of the readable images, their entries, captions, names, skipped records)."""
    items = [source.image_entry(i) for i in indices]
    pixels, kept, unreadable = load_readable([image for image, _, _ in items], size)
    skipped = []
    for position, reason in unreadable:
        name = items[position][2]
        skipped.append({"entry": indices[position], "name": name, "reason": reason})
        log.warning("skipping unreadable image %s: %s", name, reason)
    return (pixels, [indices[k] for k in kept], [items[k][1] for k in kept], [items[k][2] for k in kept],
            skipped)


@torch.inference_mode()
def _encode(vae: AugVAE, pixels: torch.Tensor, device: torch.device, trip: bool):
    if len(pixels) == 0:
        empty = torch.empty(0, vae.tokens_per_image, dtype=torch.long)
        return empty, (empty if trip else None)
    codes = vae.encode(pixels.to(device))
    return codes.cpu(), (through_pixels(vae, codes).cpu() if trip else None)


@torch.no_grad()
def through_pixels(vae: AugVAE, ids: torch.Tensor) -> torch.Tensor:
    """Codes -> 8-bit image -> codes: what a caption of a generated picture reads. The trip
    is not the identity (nearby codes decode alike), so the captioner is trained on both."""
    return vae.encode(image_io.to_uint8(vae.decode(ids)).float() / 127.5 - 1)


def _listing_hash(source: Source, total: int) -> str:
    import hashlib

    digest = hashlib.sha256()
    for i in range(total):
        digest.update(source.image_entry(i)[2].encode() + b"\0")
    return digest.hexdigest()


def _start_manifest(out: Path, settings: dict) -> dict:
    if (out / MANIFEST).exists():
        manifest = read_manifest(out)
        differ = [f"{key} {manifest.get(key)!r} (asked: {settings[key]!r})"
                  for key in SAME_SETTINGS if manifest.get(key) != settings[key]]
        if differ:
            raise ValueError(f"{out / MANIFEST} was started with other settings: {'; '.join(differ)}; "
                             "tokenize into a new directory, or repeat the command that started this one")
        if not manifest["complete"]:
            log.info("resuming %s after %d shard(s)", out, len(manifest["shards"]))
        return manifest
    out.mkdir(parents=True, exist_ok=True)
    return {"format": FORMAT, **settings, "shards": [], "skipped": [], "items": 0, "complete": False}


def tokenize(source: Source, vae: AugVAE, out: Path, *, data: str, count: int | None = None,
             batch_size: int = 32, shard_size: int = 4096, trip: bool = False,
             device: torch.device | str = "cpu", vae_file: str | None = None) -> dict:
    """Encodes ``source`` (its first ``count`` images; all of a finite one by default) into
    ``out``; returns the manifest. Resumes a directory an earlier run left incomplete."""
    device = torch.device(device)
    total = source.image_count() if count is None else min(count, source.image_count())
    if source.procedural and count is None:
        raise ValueError(f"data source {data!r} has no end: pass --count N, the number of images to tokenize")
    vae = vae.to(device).eval()
    settings = {"data": data, "augvae": vae.config.to_dict(), "augvae_file": vae_file,
                "weights_sha256": weights_hash(vae), "image_size": vae.config.resolution,
                "codes_per_image": vae.tokens_per_image, "codebook": vae.config.num_tokens,
                "trip": trip, "entries": total, "shard_size": shard_size,
                # A changed file list (same count) would shift every later entry on resume.
                "listing_sha256": None if source.procedural else _listing_hash(source, total)}
    manifest = _start_manifest(out, settings)
    if manifest["complete"]:
        print(f"{out} is already complete ({manifest['items']} images in {len(manifest['shards'])} shards)")
        return manifest
    # Shards the manifest does not list (a run killed between writing one and listing it)
    # are written again below.
    start = manifest["shards"][-1]["last"] + 1 if manifest["shards"] else 0
    dtype = code_dtype(vae.config.num_tokens)
    progress = tqdm(total=total, initial=start, desc="tokenize", unit="img", disable=not progress_enabled())
    t0, done_here = time.time(), 0
    with ThreadPoolExecutor(1) as reader:
        for shard_start in range(start, total, shard_size):
            shard_end = min(total, shard_start + shard_size)
            batches = [list(range(b, min(shard_end, b + batch_size)))
                       for b in range(shard_start, shard_end, batch_size)]
            pending = reader.submit(_load_batch, source, batches[0], vae.config.resolution)
            parts = []
            for k in range(len(batches)):
                loaded = pending.result()
                if k + 1 < len(batches):
                    pending = reader.submit(_load_batch, source, batches[k + 1], vae.config.resolution)
                parts.append((*_encode(vae, loaded[0], device, trip), *loaded[1:]))
                done_here += len(batches[k])
                progress.update(len(batches[k]))
                progress.set_postfix(img_s=f"{done_here / (time.time() - t0):.1f}")
            _commit_shard(out, manifest, parts, shard_start, shard_end, dtype, trip)
    progress.close()
    manifest["complete"] = True
    write_json_atomically(out / MANIFEST, manifest)
    return manifest


def _commit_shard(out: Path, manifest: dict, parts: list, first: int, end: int, dtype, trip: bool) -> None:
    codes = torch.cat([p[0] for p in parts]).to(dtype)
    trip_codes = torch.cat([p[1] for p in parts]).to(dtype) if trip else None
    entries = [e for p in parts for e in p[2]]
    captions = [c for p in parts for c in p[3]]
    names = [n for p in parts for n in p[4]]
    skipped = [s for p in parts for s in p[5]]
    # A range with no readable image still gets its (empty) shard: the manifest then says
    # the range is done.
    path = out / shard_name(len(manifest["shards"]))
    write_shard(path, codes, entries, captions, names, trip_codes)
    manifest["shards"].append({"file": path.name, "first": first, "last": end - 1, "items": len(entries),
                               "sha256": file_hash(path)})
    manifest["skipped"] += skipped
    manifest["items"] += len(entries)
    write_json_atomically(out / MANIFEST, manifest)
