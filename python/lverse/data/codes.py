"""Tokenized data: a directory of code shards that ``python -m lverse tokenize`` writes and
``train-biart --data codes:DIR`` reads, so that training never runs the AugVAE.

Layout of DIR:

* ``manifest.json``: the format, the AugVAE's config and ``weights_sha256`` (a hash of its
  tensors, see :func:`weights_hash`), the image size, codes per image, the data spec,
  the shards in order (file, first and last source entry, items, sha256 of the file), the
  entries skipped as unreadable (with why), and whether tokenizing is complete.
* ``shard-00000.safetensors``, ...: tensors ``codes`` (items, codes per image) and
  ``entry`` (items,) (the source entry each row came from), optionally ``trip_codes`` (the
  codes read back after decoding to 8-bit pixels, see ``tokenize --trip``); metadata
  ``captions`` (a JSON list holding each item's captions, a list, empty for uncaptioned
  images) and ``names`` (each item's image file, or its scene seed).

A shard is written to a temporary name and renamed, then the manifest is rewritten the
same way: a killed run leaves either a complete shard the manifest names or a stray file
the next run replaces, never a half-listed item.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

MANIFEST = "manifest.json"
FORMAT = "lverse code shards, version 1"


def weights_hash(module: torch.nn.Module) -> str:
    """sha256 over the module's state_dict (names, dtypes, shapes and bytes, in name order):
    the same weights give the same hash whether they came from a .ckpt or a .safetensors."""
    digest = hashlib.sha256()
    state = module.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shard_name(number: int) -> str:
    return f"shard-{number:05d}.safetensors"


def code_dtype(num_tokens: int) -> torch.dtype:
    """int16 holds any codebook up to 32768 entries (the official one has 8192) at half int32's size."""
    return torch.int16 if num_tokens <= 2**15 else torch.int32


def write_json_atomically(path: Path, value) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_shard(path: Path, codes: torch.Tensor, entries: list[int], captions: list[list[str]],
                names: list[str], trip_codes: torch.Tensor | None = None) -> None:
    tensors = {"codes": codes.contiguous(), "entry": torch.tensor(entries, dtype=torch.int64)}
    if trip_codes is not None:
        tensors["trip_codes"] = trip_codes.contiguous()
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, tmp, metadata={"captions": json.dumps(captions), "names": json.dumps(names)})
    os.replace(tmp, path)


def read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    if not directory.is_dir():
        raise FileNotFoundError(f"code shard directory not found: {directory}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a directory written by `python -m lverse tokenize`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); tokenize again into a new directory") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not an lverse code manifest (expected format {FORMAT!r})")
    for key in ("data", "augvae", "weights_sha256", "image_size", "codes_per_image", "codebook", "entries", "items",
                "shards", "complete"):
        if key not in manifest:
            raise ValueError(f"{path} lacks {key!r}: not a manifest lverse can read")
    shards = manifest["shards"]
    keys = ("file", "first", "last", "items", "sha256")
    if not isinstance(shards, list) or not all(isinstance(s, dict) and all(k in s for k in keys) for s in shards):
        raise ValueError(f"{path}: its shards list is malformed (each shard needs {', '.join(keys)})")
    return manifest


@dataclass
class Codes:
    """Every item of a shard directory, in memory."""

    codes: torch.Tensor  # (items, codes per image), int64
    trip_codes: torch.Tensor | None
    captions: list[list[str]]
    names: list[str]
    entries: torch.Tensor
    manifest: dict

    def __len__(self) -> int:
        return len(self.captions)


def read_codes(directory, verify: bool = True) -> Codes:
    """Loads a complete shard directory, checking every shard against the manifest (its
    hash with ``verify``, its item count and shapes always)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if not manifest["complete"]:
        raise ValueError(f"{directory / MANIFEST}: tokenizing did not finish ({len(manifest['shards'])} shard(s) "
                         "so far); run the same `python -m lverse tokenize` command again to complete it")
    if not manifest["items"]:
        raise ValueError(f"{directory / MANIFEST} holds no items: none of the data's images was readable")
    codes, trips, captions, names, entries = [], [], [], [], []
    for shard in manifest["shards"]:
        c, t, cap, nm, ent = _read_shard(directory, shard, manifest, verify)
        codes.append(c)
        trips.append(t)
        captions += cap
        names += nm
        entries.append(ent)
    has_trip = [t is not None for t in trips]
    if any(has_trip) and not all(has_trip):
        raise ValueError(f"{directory}: some shards hold trip_codes and some do not; tokenize again")
    return Codes(torch.cat(codes).long(), torch.cat(trips).long() if all(has_trip) else None,
                 captions, names, torch.cat(entries), manifest)


def _read_shard(directory: Path, shard: dict, manifest: dict, verify: bool):
    path = directory / shard["file"]
    expected = f"{shard['items']} items of {manifest['codes_per_image']} codes, as {directory / MANIFEST} lists"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {directory / MANIFEST} lists it ({expected})")
    if verify and file_hash(path) != shard["sha256"]:
        raise ValueError(f"{path} does not match {directory / MANIFEST} (its sha256 differs): the shard was "
                         "changed or replaced after tokenizing; tokenize again")
    try:
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is no dict)
        captions, names = json.loads(meta["captions"]), json.loads(meta["names"])
    except (SafetensorError, OSError, ValueError, KeyError) as err:
        raise ValueError(f"{path} is truncated or not an lverse code shard ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else 'unreadable'}); expected {expected}") from err
    codes = tensors.get("codes")
    items, length = shard["items"], manifest["codes_per_image"]
    if codes is None or tuple(codes.shape) != (items, length) or len(captions) != items or len(names) != items:
        got = "no codes" if codes is None else f"codes of shape {tuple(codes.shape)} and {len(captions)} captions"
        raise ValueError(f"{path} does not match {directory / MANIFEST}: expected {expected}, got {got}")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= manifest["codebook"]):
        raise ValueError(f"{path} holds codes outside [0, {manifest['codebook']}): not codes of this manifest's AugVAE")
    entry = tensors.get("entry")
    if entry is None or entry.shape != (items,) or (items and not (
            shard["first"] <= int(entry.min()) and int(entry.max()) <= shard["last"])):
        raise ValueError(f"{path}: its entry indices do not lie in [{shard['first']}, {shard['last']}] as "
                         f"{directory / MANIFEST} lists them")
    trip = tensors.get("trip_codes")
    if trip is not None and trip.shape != codes.shape:
        raise ValueError(f"{path}: trip_codes has shape {tuple(trip.shape)}, expected {tuple(codes.shape)}")
    return codes, trip, captions, names, entry


def require_same_augvae(manifest: dict, directory, vae, vae_name: str) -> None:
    """Codes are only meaningful to the AugVAE that made them: refuse any other."""
    ours = weights_hash(vae)
    if manifest["weights_sha256"] != ours:
        raise ValueError(f"{Path(directory) / MANIFEST}: these codes were made by another AugVAE "
                         f"(weights sha256 {manifest['weights_sha256'][:12]}..., config {manifest['augvae']}) "
                         f"than {vae_name} (sha256 {ours[:12]}...); tokenize the data with {vae_name}, "
                         "or pass the AugVAE that made them as --vae")
