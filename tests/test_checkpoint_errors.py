"""Corrupt checkpoints fail with one CheckpointError naming the file and what is wrong in it,
never with a TypeError, KeyError or JSONDecodeError from deep inside the loader."""

import json

import pytest
import torch
from lverse import AugVAE, BiART, CheckpointError
from safetensors import safe_open
from safetensors.torch import save_file

from .conftest import make_pair
from .test_augvae_checkpoint import write_lightning_ckpt


def rewrite_safetensors(path, metadata=None, tensors=None):
    """Rewrites an lverse safetensors file with some metadata entries and tensors replaced
    (a metadata value of None removes that entry)."""
    with safe_open(str(path), framework="pt") as f:
        old_metadata = f.metadata()
        old_tensors = {name: f.get_tensor(name) for name in f.keys()}
    new_metadata = {k: v for k, v in {**old_metadata, **(metadata or {})}.items() if v is not None}
    save_file({**old_tensors, **(tensors or {})}, str(path), metadata=new_metadata)


def expect_checkpoint_error(load, path, *fragments):
    """``load(path)`` raises a CheckpointError whose message names the file and each fragment."""
    with pytest.raises(CheckpointError) as info:
        load(path)
    message = str(info.value)
    for fragment in (path.name, *fragments):
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# -- BiART safetensors ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_tokenizer():
    from lverse import Tokenizer

    return Tokenizer.train(["a cat", "a dog", "the cat sat"], 520)


@pytest.fixture
def biart_file(tmp_path, small_tokenizer):
    from lverse.layout import TokenLayout

    layout = TokenLayout(text_vocab=small_tokenizer.vocab_size, image_vocab=16, text_len=4, image_len=4)
    model = BiART.for_layout(layout, small_tokenizer, n_layer=1, n_head=2, n_embd=16)
    path = tmp_path / "biart.safetensors"
    model.save(path, metadata={"note": "x"})
    return path


def biart_config(path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["lverse.config"])


def test_intact_biart_file_loads(biart_file):
    model = BiART.from_checkpoint(biart_file)
    assert model.layout is not None and model.tokenizer is not None
    assert model.metadata == {"note": "x"}


def test_biart_config_without_vocab_size(biart_file):
    config = biart_config(biart_file)
    del config["vocab_size"]
    rewrite_safetensors(biart_file, {"lverse.config": json.dumps(config)})
    expect_checkpoint_error(BiART.from_checkpoint, biart_file, "lverse.config", "vocab_size")


@pytest.mark.parametrize("config", ["null", "[1, 2]", '"text"', "{"], ids=["null", "list", "string", "bad-json"])
def test_biart_config_that_is_not_a_json_object(biart_file, config):
    rewrite_safetensors(biart_file, {"lverse.config": config})
    expect_checkpoint_error(BiART.from_checkpoint, biart_file, "lverse.config")


def test_biart_config_missing(biart_file):
    rewrite_safetensors(biart_file, {"lverse.config": None})
    expect_checkpoint_error(BiART.from_checkpoint, biart_file, "lverse.config")


def test_biart_config_with_unknown_keys(biart_file):
    config = biart_config(biart_file)
    config["foo"] = 1
    rewrite_safetensors(biart_file, {"lverse.config": json.dumps(config)})
    expect_checkpoint_error(BiART.from_checkpoint, biart_file, "foo")


def test_biart_config_with_a_value_of_the_wrong_type(biart_file):
    config = biart_config(biart_file)
    config["n_head"] = "abc"
    rewrite_safetensors(biart_file, {"lverse.config": json.dumps(config)})
    expect_checkpoint_error(BiART.from_checkpoint, biart_file, "n_head")


@pytest.mark.parametrize("extra", ["{not json", "null", "[]"], ids=["bad-json", "null", "list"])
def test_biart_extra_that_is_not_a_json_object(biart_file, extra):
    rewrite_safetensors(biart_file, {"lverse.extra": extra})
    expect_checkpoint_error(BiART.from_checkpoint, biart_file, "lverse.extra")


def _rewrite_extra(path, **changes):
    with safe_open(str(path), framework="pt") as f:
        extra = json.loads(f.metadata()["lverse.extra"])
    rewrite_safetensors(path, {"lverse.extra": json.dumps({**extra, **changes})})


@pytest.mark.parametrize("layout", [None, [1, 2], {"text_vocab": 3}, {"text_vocab": "x", "image_vocab": 16,
                                                                    "text_len": 4, "image_len": 4}])
def test_biart_bad_layout(biart_file, layout):
    _rewrite_extra(biart_file, layout=layout)
    expect_checkpoint_error(BiART.from_checkpoint, biart_file, "layout")


@pytest.mark.parametrize("tokenizer", ["{broken", None, 3, '{"model": 3}'])
def test_biart_bad_tokenizer(biart_file, tokenizer):
    _rewrite_extra(biart_file, tokenizer=tokenizer)
    expect_checkpoint_error(BiART.from_checkpoint, biart_file, "tokenizer")


def _tokenizers_panics(tokenizer) -> dict[str, str]:
    """tokenizer.json texts on which the tokenizers crate panics instead of returning an
    error (found by fuzz/checkpoint.py): a syntax error inside the decoder object, and a
    Precompiled normalizer whose charsmap is not base64 of a charsmap."""
    text = tokenizer.to_json()
    at = text.index('"decoder"')
    valid = json.loads(text)
    return {
        "decoder-syntax": text[:at] + text[at:].replace('{"type"', '{type"', 1),
        "precompiled-int": json.dumps({**valid, "normalizer": {"type": "Precompiled", "precompiled_charsmap": 5}}),
        "precompiled-str": json.dumps({**valid, "normalizer": {"type": "Precompiled",
                                                                "precompiled_charsmap": "AAAA"}}),
    }


@pytest.mark.parametrize("case", ["decoder-syntax", "precompiled-int", "precompiled-str"])
def test_a_tokenizer_json_that_panics_the_library_is_an_error(small_tokenizer, biart_file, case, capfd):
    from lverse import Tokenizer

    text = _tokenizers_panics(small_tokenizer)[case]
    with pytest.raises(ValueError, match="not the JSON of a tokenizer") as info:
        Tokenizer.from_json(text)
    assert "PanicException" not in type(info.value).__name__
    _rewrite_extra(biart_file, tokenizer=text)
    expect_checkpoint_error(BiART.from_checkpoint, biart_file, "tokenizer")
    # The library's panic message is in the error, not on stderr.
    assert "panicked" not in capfd.readouterr().err


def test_biart_layout_that_does_not_fit_the_model(biart_file):
    _rewrite_extra(biart_file, layout={"text_vocab": 7, "image_vocab": 16, "text_len": 4, "image_len": 4})
    expect_checkpoint_error(BiART.from_checkpoint, biart_file, "layout", "vocab_size")


# -- AugVAE safetensors ---------------------------------------------------------------------


@pytest.fixture
def augvae_file(tmp_path):
    model, _ = make_pair(single_level=1, seed=5)
    path = tmp_path / "augvae.safetensors"
    model.save(path)
    return path


def augvae_config(path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["lverse.config"])


def test_augvae_config_with_unknown_key(augvae_file):
    rewrite_safetensors(augvae_file, {"lverse.config": json.dumps({"foo": 1})})
    expect_checkpoint_error(AugVAE.from_checkpoint, augvae_file, "foo")


@pytest.mark.parametrize("ch_mult", [None, 3, ["a"]], ids=["null", "int", "strings"])
def test_augvae_config_with_bad_ch_mult(augvae_file, ch_mult):
    config = augvae_config(augvae_file)
    config["ch_mult"] = ch_mult
    rewrite_safetensors(augvae_file, {"lverse.config": json.dumps(config)})
    expect_checkpoint_error(AugVAE.from_checkpoint, augvae_file, "ch_mult")


def test_augvae_config_the_core_rejects(augvae_file):
    config = augvae_config(augvae_file)
    config["hidden_dim"] = 20  # not divisible by the 32 GroupNorm groups
    rewrite_safetensors(augvae_file, {"lverse.config": json.dumps(config)})
    expect_checkpoint_error(AugVAE.from_checkpoint, augvae_file, "GroupNorm")


def test_augvae_config_that_is_not_a_json_object(augvae_file):
    rewrite_safetensors(augvae_file, {"lverse.config": "null"})
    expect_checkpoint_error(AugVAE.from_checkpoint, augvae_file, "lverse.config")


# -- official Lightning .ckpt ---------------------------------------------------------------


@pytest.fixture
def ckpt_file(tmp_path):
    _, reference = make_pair(single_level=None, seed=7)
    path = tmp_path / "augvae.ckpt"
    write_lightning_ckpt(path, reference, None)
    return path


def test_a_pickle_named_safetensors_is_read_by_its_content(ckpt_file, tmp_path):
    # torch.load dispatches a path ending in .safetensors to safetensors by its name
    # (found by fuzz/checkpoint.py): the file's bytes decide here, not its name.
    renamed = tmp_path / "official.safetensors"
    renamed.write_bytes(ckpt_file.read_bytes())
    assert AugVAE.from_checkpoint(renamed).config == AugVAE.from_checkpoint(ckpt_file).config
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"\x80\x02" + bytes(100))
    expect_checkpoint_error(AugVAE.from_checkpoint, damaged, "not a readable PyTorch checkpoint")


def test_a_zip_that_libtorch_cannot_seek_in_is_a_checkpoint_error(tmp_path):
    # libtorch's zip reader raises OSError (EINVAL) on this one (found by fuzz/checkpoint.py).
    path = tmp_path / "damaged.ckpt"
    path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 40)
    expect_checkpoint_error(AugVAE.from_checkpoint, path, "not a readable PyTorch checkpoint", "Invalid argument")


def test_a_pickle_cut_inside_a_number_is_a_checkpoint_error(tmp_path):
    # A BINFLOAT opcode with 3 of its 8 bytes: struct.error from the unpickler (found by
    # fuzz/checkpoint.py).
    path = tmp_path / "cut.ckpt"
    path.write_bytes(b"\x80\x02G\x00\x00\x00")
    expect_checkpoint_error(AugVAE.from_checkpoint, path, "not a readable PyTorch checkpoint")


def rewrite_ckpt(path, change):
    """Rewrites a .ckpt after ``change(data)`` edited its loaded dict in place."""
    data = torch.load(path, weights_only=False)
    change(data)
    torch.save(data, path)


def test_ckpt_state_dict_that_is_a_list(ckpt_file):
    rewrite_ckpt(ckpt_file, lambda d: d.update(state_dict=list(d["state_dict"].values())))
    expect_checkpoint_error(AugVAE.from_checkpoint, ckpt_file, "state_dict", "list")


def test_ckpt_hyper_parameters_that_are_a_list(ckpt_file):
    rewrite_ckpt(ckpt_file, lambda d: d.update(hyper_parameters=[d["hyper_parameters"]["args"]]))
    expect_checkpoint_error(AugVAE.from_checkpoint, ckpt_file, "hyper_parameters", "list")


def test_ckpt_key_with_a_non_numeric_level(ckpt_file):
    rewrite_ckpt(ckpt_file, lambda d: d["state_dict"].update({"quantizers.x.foo": torch.zeros(2)}))
    expect_checkpoint_error(AugVAE.from_checkpoint, ckpt_file, "quantizers.x.foo")


def test_ckpt_int_key(ckpt_file):
    rewrite_ckpt(ckpt_file, lambda d: d["state_dict"].update({3: torch.zeros(2)}))
    expect_checkpoint_error(AugVAE.from_checkpoint, ckpt_file, "state_dict", "3")


def test_ckpt_value_that_is_not_a_tensor(ckpt_file):
    rewrite_ckpt(ckpt_file, lambda d: d["state_dict"].update({"decoders.0.conv_in.bias": [0.0, 1.0]}))
    expect_checkpoint_error(AugVAE.from_checkpoint, ckpt_file, "decoders.0.conv_in.bias", "list")


@pytest.mark.parametrize("key, value", [("hidden_dim", "abc"), ("ch_mult", None), ("ch_mult", ["x"]),
                                        ("quant_beta", "high")])
def test_ckpt_args_of_the_wrong_type(ckpt_file, key, value):
    rewrite_ckpt(ckpt_file, lambda d: setattr(d["hyper_parameters"]["args"], key, value))
    expect_checkpoint_error(AugVAE.from_checkpoint, ckpt_file, "hyper_parameters", key)


def test_ckpt_attn_resolutions_of_the_wrong_type(ckpt_file):
    # The number of levels is read off attn_resolutions only when no quantizer is stored.
    def change(d):
        d["hyper_parameters"]["args"].attn_resolutions = 5
        d["state_dict"] = {k: v for k, v in d["state_dict"].items() if not k.startswith("quantizers.")}

    rewrite_ckpt(ckpt_file, change)
    expect_checkpoint_error(AugVAE.from_checkpoint, ckpt_file, "hyper_parameters", "attn_resolutions")


def test_ckpt_args_the_core_rejects(ckpt_file):
    rewrite_ckpt(ckpt_file, lambda d: setattr(d["hyper_parameters"]["args"], "hidden_dim", 20))
    expect_checkpoint_error(AugVAE.from_checkpoint, ckpt_file, "GroupNorm")


# -- tensor dtypes and values ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.bool])
def test_ckpt_integer_weights_are_rejected(ckpt_file, dtype):
    key = "encoders.0.conv_in.weight"
    rewrite_ckpt(ckpt_file, lambda d: d["state_dict"].update({key: d["state_dict"][key].to(dtype)}))
    expect_checkpoint_error(AugVAE.from_checkpoint, ckpt_file, key, str(dtype))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_ckpt_non_finite_weights_are_rejected(ckpt_file, bad):
    key = "decoders.0.conv_in.bias"

    def poison(d):
        d["state_dict"][key] = d["state_dict"][key].clone()
        d["state_dict"][key][0] = bad

    rewrite_ckpt(ckpt_file, poison)
    message = expect_checkpoint_error(AugVAE.from_checkpoint, ckpt_file, key)
    assert ("NaN" in message) if bad != bad else ("infinite" in message)


def test_safetensors_integer_weight_is_rejected(biart_file):
    with safe_open(str(biart_file), framework="pt") as f:
        shape = f.get_tensor("head.weight").shape
    rewrite_safetensors(biart_file, tensors={"head.weight": torch.zeros(shape, dtype=torch.int32)})
    expect_checkpoint_error(BiART.from_checkpoint, biart_file, "head.weight", "torch.int32")


def test_safetensors_nan_ema_statistic_is_rejected(augvae_file):
    key = "quantizers.0.embedding.cluster_size"
    with safe_open(str(augvae_file), framework="pt") as f:
        sizes = f.get_tensor(key)
    sizes[1] = float("nan")
    rewrite_safetensors(augvae_file, tensors={key: sizes})
    expect_checkpoint_error(AugVAE.from_checkpoint, augvae_file, key, "NaN")


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.float32])
def test_biart_mask_buffer_of_any_real_dtype_loads(biart_file, dtype):
    # minGPT variants keep the causal mask as float, bool or uint8; the core never reads it.
    key = "blocks.0.attn.mask"
    with safe_open(str(biart_file), framework="pt") as f:
        mask = f.get_tensor(key)
    rewrite_safetensors(biart_file, tensors={key: mask.to(dtype)})
    model = BiART.from_checkpoint(biart_file)
    assert torch.equal(model.blocks[0].attn.mask, mask)


def test_half_precision_weights_load(augvae_file):
    with safe_open(str(augvae_file), framework="pt") as f:
        halves = {name: f.get_tensor(name).half() for name in f.keys()}
    rewrite_safetensors(augvae_file, tensors=halves)
    model = AugVAE.from_checkpoint(augvae_file)
    assert model.encoders[0].conv_in.weight.dtype == torch.float32


def test_load_checked_reports_dtype_and_values():
    model, _ = make_pair(single_level=1)
    state = model.state_dict()
    state["encoders.0.conv_in.weight"] = state["encoders.0.conv_in.weight"].long()
    state["decoders.0.conv_in.bias"] = torch.full_like(state["decoders.0.conv_in.bias"], float("nan"))
    with pytest.raises(CheckpointError) as info:
        model.load_checked(state)
    message = str(info.value)
    assert "encoders.0.conv_in.weight: expected a floating-point tensor, found torch.int64" in message
    assert "decoders.0.conv_in.bias" in message and "NaN" in message


# -- pickles that hold code -----------------------------------------------------------------
# torch.load(weights_only=True) refuses them; lverse must say the file holds code it will not
# run, name the global, and never pass on torch's advice to retry with weights_only=False.


class _Calls:
    """Unpickles as ``func(*args)``: what a malicious checkpoint does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _marker_command(marker):
    return f"echo pwned > {marker}"


def _os_system(marker):
    import os

    return _Calls(os.system, _marker_command(marker))


def _builtins_eval(marker):
    import builtins

    return _Calls(builtins.eval, f"open({str(marker)!r}, 'w').write('pwned')")


_FAKE_MODULE = "pytorch_lightning.utilities.parsing"  # where AttributeDict lives, which is allowed


def _unknown_module_global(marker, monkeypatch):
    """A call to ``run`` of a module named like Lightning's: only the test process has it,
    while the file is written (an attacker's module, or one lverse never imports)."""
    import types

    def run(path):
        with open(path, "w") as f:
            f.write("pwned")

    parents = _FAKE_MODULE.split(".")
    for i in range(1, len(parents) + 1):
        module = types.ModuleType(".".join(parents[:i]))
        monkeypatch.setitem(__import__("sys").modules, module.__name__, module)
    run.__module__, run.__qualname__ = _FAKE_MODULE, "run"
    __import__("sys").modules[_FAKE_MODULE].run = run
    return _Calls(run, str(marker))


EVIL = {
    "os.system": (_os_system, "posix.system"),
    "builtins.eval": (_builtins_eval, "builtins.eval"),
    "unknown-module": (None, f"{_FAKE_MODULE}.run"),
}
SAVES = {"zip": {}, "legacy": {"_use_new_zipfile_serialization": False}, "protocol-4": {"pickle_protocol": 4}}


def write_evil(path, kind, marker, monkeypatch, **save_options):
    """A Lightning-shaped checkpoint whose hyper_parameters run code when unpickled."""
    make, _ = EVIL[kind]
    with monkeypatch.context() as patch:  # the fake module is gone again once the file is written
        payload = make(marker) if make else _unknown_module_global(marker, patch)
        torch.save({"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": {"args": payload}}, path,
                   **save_options)
    return path


def expect_refused_code(load, path, marker, *fragments):
    import traceback

    with pytest.raises(CheckpointError) as info:
        load(path)
    message = str(info.value)
    for fragment in (path.name, "holds code that lverse will not run", *fragments):
        assert fragment in message, f"{fragment!r} not in {message!r}"
    # Not in the message, nor in the chained torch error a traceback would print.
    shown = "".join(traceback.format_exception(info.value)).replace("`", "")
    assert "weights_only set to False" not in shown and "weights_only=False" not in shown, shown
    assert not marker.exists(), "the checkpoint's code ran"
    return message


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("save", SAVES, ids=list(SAVES))
@pytest.mark.parametrize("kind", EVIL, ids=list(EVIL))
@pytest.mark.parametrize("suffix", [".ckpt", ".pt"])
def test_augvae_refuses_a_pickle_that_runs_code(tmp_path, monkeypatch, kind, save, suffix):
    marker = tmp_path / "pwned"
    path = write_evil(tmp_path / f"evil{suffix}", kind, marker, monkeypatch, **SAVES[save])
    expect_refused_code(AugVAE.from_checkpoint, path, marker, EVIL[kind][1])


def test_the_code_is_described_as_a_call(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    message = expect_refused_code(AugVAE.from_checkpoint, write_evil(tmp_path / "a.ckpt", "os.system", marker,
                                                                     monkeypatch), marker, "a call to posix.system")
    assert "Namespace" in message  # what lverse does unpickle


def test_every_refused_global_is_named(tmp_path):
    import builtins
    import os

    marker = tmp_path / "pwned"
    path = tmp_path / "two.ckpt"
    torch.save({"state_dict": {}, "a": _Calls(os.system, _marker_command(marker)),
                "b": _Calls(builtins.eval, "1")}, path)
    expect_refused_code(AugVAE.from_checkpoint, path, marker, "a call to posix.system and a call to builtins.eval")


@pytest.mark.parametrize("kind", EVIL, ids=list(EVIL))
def test_load_refuses_a_model_directory_with_such_a_ckpt(tmp_path, monkeypatch, biart_file, kind):
    import lverse

    marker = tmp_path / "pwned"
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    biart_file.rename(model_dir / "biart.safetensors")
    write_evil(model_dir / "augvae.ckpt", kind, marker, monkeypatch)
    expect_refused_code(lverse.load, model_dir, marker, EVIL[kind][1])


@pytest.mark.parametrize("kind", EVIL, ids=list(EVIL))
def test_biart_never_unpickles(tmp_path, monkeypatch, kind):
    import traceback

    marker = tmp_path / "pwned"
    path = write_evil(tmp_path / "biart.ckpt", kind, marker, monkeypatch)
    with pytest.raises(CheckpointError, match="is not an lverse BiART checkpoint") as info:
        BiART.from_checkpoint(path)
    assert "False" not in "".join(traceback.format_exception(info.value))
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol", "ignore:.torch.load. received a zip file",
                            "ignore::DeprecationWarning")
@pytest.mark.parametrize("write, expected", [
    (lambda p: torch.save({"state_dict": {}}, p, pickle_protocol=4), "opcode 149 (FRAME)"),
    (lambda p: torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), p), "is a TorchScript archive"),
], ids=["protocol-4", "torchscript"])
def test_other_refusals_give_no_unsafe_advice(tmp_path, write, expected):
    import traceback

    path = tmp_path / "odd.pt"
    write(path)
    with pytest.raises(CheckpointError) as info:
        AugVAE.from_checkpoint(path)
    assert expected in str(info.value) and path.name in str(info.value)
    shown = "".join(traceback.format_exception(info.value)).replace("`", "")
    assert "weights_only set to False" not in shown and "weights_only=False" not in shown, shown
