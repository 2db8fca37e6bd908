"""python -m lverse tokenize: every image encoded once into shards with a manifest, which
resume after a kill without losing or repeating an item; train-biart --data codes:DIR
trains from them with no AugVAE in the loop; damaged or foreign shards are refused."""

import json
import os
import signal
import subprocess
import sys
import time

import lverse
import pytest
import torch
from lverse import images
from lverse.__main__ import main
from lverse.data import shapes
from lverse.data.codes import MANIFEST, read_codes, weights_hash
from PIL import Image

from .conftest import SMALL


@pytest.fixture(scope="module")
def vae_file(tmp_path_factory):
    torch.manual_seed(0)
    vae = lverse.AugVAE(lverse.AugVAEConfig(**SMALL, single_level=1))
    with torch.no_grad():
        vae.quantizers[0].embedding.weight.normal_(0, 0.5)  # well-separated codes, as trained ones
    path = tmp_path_factory.mktemp("vae") / "augvae.safetensors"
    vae.save(path)
    return path


def tokenize(*args) -> int:
    return main(["tokenize", *map(str, args)])


def caption_folder(root, count: int, broken=()):
    """count images with same-name .txt captions (two lines each), some of them not images."""
    root.mkdir()
    for i in range(count):
        path = root / f"img{i:02d}.png"
        if i in broken:
            path.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        else:
            Image.new("RGB", (48, 40), (10 * i, 255 - 10 * i, 90)).save(path)
        path.with_suffix(".txt").write_text(f"picture {i}\nanother caption of {i}\n")
    return root


def test_codes_are_the_augvaes_tokens_of_each_scene(tmp_path, vae_file):
    assert tokenize("--data", "shapes", "--count", 25, "--vae", vae_file, "--trip", "--batch-size", 4,
                    "--shard-size", 10, "-o", tmp_path / "codes") == 0
    data = read_codes(tmp_path / "codes")
    vae = lverse.AugVAE.from_checkpoint(vae_file)
    scenes = [shapes.scene(i, size=32) for i in range(25)]
    expected = vae.encode(images.load([image for image, _ in scenes], size=32))
    assert torch.equal(data.codes, expected)
    # The trip, written out: decode, round to 8-bit pixels, encode again.
    assert torch.equal(data.trip_codes, vae.encode(images.to_uint8(vae.decode(expected)).float() / 127.5 - 1))
    assert data.captions == [[caption] for _, caption in scenes]
    assert data.entries.tolist() == list(range(25)) and data.names[3] == "scene 3"
    manifest = data.manifest
    assert [s["items"] for s in manifest["shards"]] == [10, 10, 5] and manifest["complete"]
    assert manifest["weights_sha256"] == weights_hash(vae) and manifest["image_size"] == 32
    assert manifest["codes_per_image"] == 64 and manifest["augvae"] == vae.config.to_dict()


def test_each_image_is_encoded_once_and_unreadable_ones_are_listed(tmp_path, vae_file, capsys):
    root = caption_folder(tmp_path / "pairs", 6, broken={2})
    assert tokenize("--data", f"captions:{root}", "--vae", vae_file, "--batch-size", 4, "-o", tmp_path / "codes") == 0
    assert "5 images in 1 shard(s)" in capsys.readouterr().out
    data = read_codes(tmp_path / "codes")
    assert data.captions[0] == ["picture 0", "another caption of 0"]
    assert data.names == [str(root / f"img{i:02d}.png") for i in (0, 1, 3, 4, 5)]
    (skipped,) = data.manifest["skipped"]
    assert skipped["name"] == str(root / "img02.png") and skipped["entry"] == 2 and skipped["reason"]


def test_coco_json_groups_the_captions_of_an_image(tmp_path, vae_file):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        Image.new("RGB", (32, 32), (100 * i, 50, 50)).save(folder / f"{i}.jpg")
    annotations = {"images": [{"id": 7, "file_name": "0.jpg"}, {"id": 9, "file_name": "1.jpg"}],
                   "annotations": [{"image_id": 7, "caption": "a red one"}, {"image_id": 9, "caption": "b"},
                                   {"image_id": 7, "caption": "the first"}]}
    (tmp_path / "captions.json").write_text(json.dumps(annotations))
    spec = f"coco:{tmp_path / 'captions.json'}:{folder}"
    assert tokenize("--data", spec, "--vae", vae_file, "-o", tmp_path / "codes") == 0
    assert read_codes(tmp_path / "codes").captions == [["a red one", "the first"], ["b"]]


def test_a_killed_run_resumes_without_losing_or_repeating_an_item(tmp_path, vae_file):
    args = ["--data", "shapes", "--count", 3000, "--vae", vae_file, "--batch-size", 20, "--shard-size", 100, "--trip"]
    assert tokenize(*args, "-o", tmp_path / "whole") == 0
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "lverse", "tokenize", *map(str, args), "-o", str(out)]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "LVERSE_PROGRESS": "0"})
    deadline = time.time() + 120
    while time.time() < deadline:
        manifest = out / MANIFEST
        if manifest.exists() and len(json.loads(manifest.read_text())["shards"]) >= 3:
            break
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    manifest = json.loads((out / MANIFEST).read_text())
    assert not manifest["complete"], "the run ended before it was killed: give it more to do"
    with pytest.raises(ValueError, match="tokenizing did not finish"):
        read_codes(out)
    # A shard written but never listed (killed between the two) is written again.
    (out / f"shard-{len(manifest['shards']):05d}.safetensors").write_bytes(b"half a shard")
    assert tokenize(*args, "-o", out) == 0
    whole, resumed = read_codes(tmp_path / "whole"), read_codes(out)
    assert torch.equal(whole.codes, resumed.codes) and torch.equal(whole.trip_codes, resumed.trip_codes)
    assert resumed.entries.tolist() == list(range(3000)) and resumed.captions == whole.captions


def test_resuming_with_other_settings_is_refused(tmp_path, vae_file, capsys):
    assert tokenize("--data", "shapes", "--count", 8, "--vae", vae_file, "-o", tmp_path / "codes") == 0
    assert tokenize("--data", "shapes", "--count", 9, "--vae", vae_file, "-o", tmp_path / "codes") == 1
    error = capsys.readouterr().err
    assert f"{tmp_path / 'codes' / MANIFEST} was started with other settings: entries 8 (asked: 9)" in error


def test_procedural_data_needs_a_count(tmp_path, vae_file, capsys):
    assert tokenize("--data", "shapes", "--vae", vae_file, "-o", tmp_path / "codes") == 1
    assert "data source 'shapes' has no end: pass --count N" in capsys.readouterr().err


# -- damaged, foreign and mismatched shards ----------------------------------------------------


@pytest.fixture
def codes_dir(tmp_path, vae_file):
    assert tokenize("--data", "shapes", "--count", 12, "--vae", vae_file, "--shard-size", 6, "-o",
                    tmp_path / "codes") == 0
    return tmp_path / "codes"


def test_a_truncated_shard_is_named(codes_dir):
    shard = codes_dir / "shard-00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(ValueError, match=f"{shard} does not match {codes_dir / MANIFEST}"):
        read_codes(codes_dir)
    with pytest.raises(ValueError, match=f"{shard} is truncated or not an lverse code shard"):
        read_codes(codes_dir, verify=False)


def test_a_manifest_that_does_not_match_its_shards_is_refused(codes_dir):
    original = (codes_dir / MANIFEST).read_text()
    manifest = json.loads(original)
    manifest["shards"][0]["items"] = 7
    (codes_dir / MANIFEST).write_text(json.dumps(manifest))
    shard = codes_dir / "shard-00000.safetensors"
    with pytest.raises(ValueError, match=f"{shard} does not match .*expected 7 items of 64 codes.*got codes of shape"):
        read_codes(codes_dir, verify=False)
    (codes_dir / MANIFEST).write_text(original)
    (codes_dir / "shard-00001.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="shard-00001.safetensors is missing"):
        read_codes(codes_dir)


def test_a_directory_without_manifest_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="manifest.json not found: not a directory written by"):
        read_codes(tmp_path / "empty")


BIART = ["--n-layer", 1, "--n-head", 2, "--n-embd", 32, "--text-len", 24, "--vocab-size", 520, "--batch-size", 4]


def test_train_biart_refuses_codes_of_another_augvae(codes_dir, tmp_path, capsys):
    torch.manual_seed(1)
    other = tmp_path / "other.safetensors"
    lverse.AugVAE(lverse.AugVAEConfig(**SMALL, single_level=1)).save(other)
    assert main(["train-biart", "--data", f"codes:{codes_dir}", "--vae", str(other), "--out", str(tmp_path / "m"),
                 "--steps", "1", *map(str, BIART)]) == 1
    error = capsys.readouterr().err
    assert f"{codes_dir / MANIFEST}: these codes were made by another AugVAE" in error
    assert f"than --vae {other}" in error


def test_train_biart_from_codes_writes_a_model_directory(tmp_path, vae_file, capsys):
    root = caption_folder(tmp_path / "pairs", 30)
    assert tokenize("--data", f"captions:{root}", "--vae", vae_file, "--trip", "-o", tmp_path / "codes") == 0
    out = tmp_path / "model"
    assert main(["train-biart", "--data", f"codes:{tmp_path / 'codes'}", "--vae", str(vae_file), "--out", str(out),
                 "--steps", "3", "--sample-every", "3", "--held-out", "5", *map(str, BIART)]) == 0
    printed = capsys.readouterr()
    # The samples are the user's own held-out images (the last 5), not shapes scenes.
    assert "step 3: " in printed.out + printed.err and "held-out images captioned exactly" in printed.out + printed.err
    assert "(true: 'picture 25')" in printed.out + printed.err
    assert sorted(p.name for p in out.iterdir()) == ["augvae.safetensors", "biart.safetensors", "lverse.json",
                                                     "tokenizer.json", "train_state.pt"]
    model = lverse.load(out)
    assert model.biart.metadata["data"] == f"codes:{tmp_path / 'codes'}" and model.biart.metadata["step"] == 3
    assert json.loads((out / "lverse.json").read_text())["augvae"]["codes"] == 64
    assert isinstance(model.caption(Image.new("RGB", (32, 32))), str)


def test_reencode_needs_trip_codes(codes_dir, tmp_path, vae_file, capsys):
    assert main(["train-biart", "--data", f"codes:{codes_dir}", "--vae", str(vae_file), "--out", str(tmp_path / "m"),
                 "--steps", "1", "--reencode", "0.5", *map(str, BIART)]) == 1
    assert f"which the shards in {codes_dir} lack: tokenize with --trip" in capsys.readouterr().err


def test_held_out_images_are_left_out_with_all_their_captions(tmp_path):
    from lverse.data.sources import CaptionFolderSource, split_held_out

    source = CaptionFolderSource(caption_folder(tmp_path / "pairs", 8), size=32)
    train, held = split_held_out(source, 3)
    assert held == [5, 6, 7] and len(train) == 2 * 5
    held_paths = {source.image_entry(i)[0] for i in held}
    assert held_paths == {tmp_path / "pairs" / f"img{i:02d}.png" for i in (5, 6, 7)}
    assert not any(source.pairs[i][0] in held_paths for i in train)


def test_eval_on_own_data_needs_a_finite_source(capsys):
    assert main(["eval", "--data", "shapes", "--no-fid"]) == 1
    assert "eval --data needs a finite data source" in capsys.readouterr().err


def test_eval_scores_what_training_held_out_and_refuses_more(tmp_path, vae_file, capsys):
    from lverse.evaluation import held_out_split

    root = caption_folder(tmp_path / "pairs", 30, broken={3})
    spec = f"captions:{root}"
    assert tokenize("--data", spec, "--vae", vae_file, "-o", tmp_path / "codes") == 0
    out = tmp_path / "model"
    assert main(["train-biart", "--data", f"codes:{tmp_path / 'codes'}", "--vae", str(vae_file), "--out", str(out),
                 "--steps", "1", *map(str, BIART)]) == 0
    model = lverse.load(out)
    # Held out by source image (30 of them, one unreadable): the last 3, as eval counts them.
    assert model.biart.metadata["held_out"] == {"data": spec, "images": 3, "of": 30}
    assert held_out_split(model, spec, None) == (3, 30)
    assert held_out_split(model, "captions:elsewhere", None) == (64, None)
    capsys.readouterr()
    assert main(["eval", "--model", str(out), "--data", spec, "--held-out", "4", "--no-fid"]) == 1
    assert "the model held out only the last 3 of the first 30 images" in capsys.readouterr().err


def test_an_unreadable_training_image_is_replaced_from_the_training_pairs_only(tmp_path):
    from lverse.data.sources import CaptionFolderSource, split_held_out

    source = CaptionFolderSource(caption_folder(tmp_path / "pairs", 6, broken={4}), size=32)
    train, held = split_held_out(source, 1)  # image 5 held out; image 4, the last trained on, is broken
    _, captions = source.batch([len(train) - 1], pool=train)
    assert captions == ["picture 0"]  # wrapped round the training pairs, not into image 5's


def test_resuming_after_the_file_list_changed_is_refused(tmp_path, vae_file, capsys):
    root = caption_folder(tmp_path / "pairs", 4)
    assert tokenize("--data", f"captions:{root}", "--vae", vae_file, "-o", tmp_path / "codes") == 0
    (root / "img01.png").rename(root / "img09.png")
    (root / "img01.txt").rename(root / "img09.txt")
    assert tokenize("--data", f"captions:{root}", "--vae", vae_file, "-o", tmp_path / "codes") == 1
    assert "was started with other settings: listing_sha256" in capsys.readouterr().err


def test_resume_refuses_weights_and_state_of_different_steps(tmp_path, vae_file, codes_dir, capsys):
    out = tmp_path / "model"
    common = ["train-biart", "--data", f"codes:{codes_dir}", "--vae", str(vae_file), "--out", str(out),
              "--checkpoint-every", "1", *map(str, BIART)]
    assert main([*common, "--steps", "2"]) == 0
    model = lverse.BiART.from_checkpoint(out / "biart.safetensors")
    model.save(out / "biart.safetensors", metadata={**model.metadata, "step": 1})  # as if killed in between
    capsys.readouterr()
    assert main([*common, "--steps", "3", "--resume"]) == 1
    assert "biart.safetensors is at step 1, train_state.pt at step 2" in capsys.readouterr().err
