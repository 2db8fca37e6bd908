"""Fuzzes checkpoint loading with atheris (libFuzzer for Python): mutated lverse safetensors
files, above all their JSON header and the lverse metadata in it (config, token layout,
tokenizer).

An input's first byte picks how it becomes a file. For a small valid file of each kind
(an AugVAE-ML, an AugVAE-SL, a BiART with layout and tokenizer), the rest of the input is
the header, and the file is the header's length, the header and that file's tensor data:
so every mutation lands in the header, not in megabytes of weights. The last mode writes
the input as the whole file (the length prefix, cut files, junk). Each file is opened
with ``AugVAE.from_checkpoint`` and ``BiART.from_checkpoint``: each must either give a
model that runs (one encode and decode, one generation step) or raise
``lverse.CheckpointError``; any other exception, a panic, a crash or a hang is a finding.
Coverage guides the mutations through lverse's Python loading code; safetensors and the
tokenizer's JSON parser run uninstrumented. ``--seeds DIR`` writes the starting corpus.

    python fuzz/checkpoint.py --seeds SEEDS
    python fuzz/checkpoint.py CORPUS SEEDS -max_total_time=60     # libFuzzer flags
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["lverse"]):
    import torch
    from lverse import AugVAE, AugVAEConfig, BiART, CheckpointError, Tokenizer
    from lverse.layout import TokenLayout

# One thread: a fuzzer runs many small inputs, and the tests' models are tiny.
torch.set_num_threads(1)
SCRATCH = Path(tempfile.mkdtemp(prefix="lverse-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))


def _valid_files() -> list[bytes]:
    """A small AugVAE-ML, an AugVAE-SL and a BiART with its layout and tokenizer, as bytes."""
    torch.manual_seed(0)
    small = dict(hidden_dim=32, ch_mult=(1, 2), inner_ch_mult=(1, 2), num_res_blocks=1, z_channels=32,
                 codebook_dim=8, num_tokens=16, resolution=16, levels=3)
    tokenizer = Tokenizer.train(["a red circle", "a blue square at the top"] * 3, 520)
    layout = TokenLayout(text_vocab=tokenizer.vocab_size, image_vocab=16, text_len=4, image_len=4)
    biart = BiART(layout.vocab_size, layout.block_size, n_layer=1, n_head=2, n_embd=8)
    biart.attach(layout, tokenizer)
    files = []
    for model in (AugVAE(AugVAEConfig(**small)), AugVAE(AugVAEConfig(**small, single_level=1)), biart):
        path = SCRATCH / "seed.safetensors"
        model.save(path)
        files.append(path.read_bytes())
    return files


def _split(file: bytes) -> tuple[bytes, bytes]:
    """(JSON header, tensor data) of a safetensors file."""
    length = int.from_bytes(file[:8], "little")
    return file[8 : 8 + length], file[8 + length :]


VALID = _valid_files()
DATA = [_split(f)[1] for f in VALID]
WHOLE_FILE = len(VALID)  # the mode byte that writes the input as it is


def to_file(data: bytes) -> bytes:
    if not data:
        return b""
    mode = data[0] % (len(VALID) + 1)
    if mode == WHOLE_FILE:
        return data[1:]
    header = data[1:]
    return len(header).to_bytes(8, "little") + header + DATA[mode]


def write_seeds(directory: Path) -> None:
    """Each valid file's header in its mode, and the BiART file whole."""
    directory.mkdir(parents=True, exist_ok=True)
    for mode, file in enumerate(VALID):
        (directory / f"header{mode}").write_bytes(bytes([mode]) + _split(file)[0])
    (directory / "whole_biart").write_bytes(bytes([WHOLE_FILE]) + VALID[-1])


def use(model) -> None:
    """A loaded model must run: the loader's checks are what stands between a file and the
    native code."""
    if isinstance(model, AugVAE):
        size = model.config.resolution
        model.decode(model.encode(torch.zeros(1, 3, size, size)))
    else:
        idx = torch.zeros(1, 1, dtype=torch.long)
        model.generate(idx, torch.zeros_like(idx), 1, greedy=True)


def one_input(data: bytes) -> None:
    path = SCRATCH / "input.safetensors"
    path.write_bytes(to_file(data))
    for loader in (AugVAE.from_checkpoint, BiART.from_checkpoint):
        try:
            model = loader(path)
        except CheckpointError:
            continue
        use(model)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--seeds":
        write_seeds(Path(sys.argv[2]))
        return
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
