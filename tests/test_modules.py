"""BiART and AugVAE are ordinary torch.nn.Modules: what a PyTorch training script does with
a module works, and the native inference paths either compute what forward computes or
refuse loudly (NativePathError), never ignoring a change to the module."""

import copy
import dataclasses
import io
import pickle

import lverse
import lverse.biart_layers
import pytest
import torch
from lverse import BiART, NativePathError
from torch import nn
from torch.utils.checkpoint import checkpoint

from .conftest import make_pair
from .reference_mingpt import greedy_loop

V, T = 50, 40


def small_biart(seed=0) -> BiART:
    torch.manual_seed(seed)
    return BiART(V, T, n_layer=2, n_head=4, n_embd=32, embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0)


def ids(b=3, t=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, V, (b, t), generator=g)
    seg = (torch.arange(t) >= t // 2).long().expand(b, t).contiguous()
    return idx, seg


def sl_vae():
    model, _ = make_pair(single_level=1)
    return model


def images(b=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, 32, 32, generator=g) * 2 - 1


def grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def max_grad_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys() and a
    return max((a[k] - b[k]).abs().max().item() for k in a)


class LoraLinear(nn.Module):
    """What PEFT's LoRA puts in place of an nn.Linear: the base layer plus a low-rank update."""

    def __init__(self, base: nn.Linear, rank=4):
        super().__init__()
        self.base_layer = base
        self.lora_A = nn.Linear(base.in_features, rank, bias=False)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False)
        nn.init.normal_(self.lora_B.weight, std=0.5)

    def forward(self, x):
        return self.base_layer(x) + self.lora_B(self.lora_A(x))


# --- parity: forward (PyTorch) against the native paths on the same module -----------------

def test_biart_forward_matches_native_cache_and_greedy():
    model = small_biart().eval()
    idx, seg = ids()
    logits = model(idx, seg)
    cached = model.cached_logits(idx, seg, prefix=4)
    assert (cached - logits[:, 3:]).abs().max().item() < 1e-5
    prefix, pseg = idx[:, :4], torch.zeros(3, 4, dtype=torch.long)
    assert torch.equal(model.generate(prefix, pseg, 20, greedy=True), greedy_loop(model, prefix, pseg, 20))


@pytest.mark.parametrize("single_level", [None, 1], ids=["ML", "SL"])
def test_augvae_forward_matches_native_encode_decode(single_level):
    model, _ = make_pair(single_level=single_level)
    model.eval()
    x = images()
    # The PyTorch path's ids and quantized maps, level by level.
    h, codes, level_ids = x, [], []
    with torch.no_grad():
        for encoder, pre_quant, quantizer in zip(model.encoders, model.pre_quants, model.quantizers, strict=False):
            h = encoder(h)
            q = quantizer(pre_quant(h))
            codes.append(q.codes)
            level_ids.append(q.ids)
        levels = range(len(codes)) if single_level is None else [single_level]
        python_ids = torch.cat([level_ids[lv] for lv in levels], 1)
        python_image = model._decode_codes([codes[lv] for lv in levels])
        recon, _ = model(x)
    native_ids = model.encode(x)
    assert torch.equal(native_ids, python_ids)
    assert native_ids.unique().numel() > 5
    assert (model.decode(native_ids) - python_image).abs().max().item() < 1e-4
    assert (recon - python_image).abs().max().item() < 1e-6


# --- copies, pickles, EMA, quantization ---------------------------------------------------

def _round_trips(model):
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    return [copy.deepcopy(model), pickle.loads(pickle.dumps(model)), torch.load(buffer, weights_only=False)]


def test_biart_deepcopy_pickle_torch_save():
    from lverse.weights import default_model_dir

    model = lverse.load(default_model_dir()).biart  # carries its layout and tokenizer
    idx = torch.tensor([[model.layout.soi] + [model.layout.image_offset] * 3])
    seg = torch.zeros_like(idx)
    expected_logits = model(idx, seg)
    expected_tokens = model.generate(idx, seg, 8, greedy=True)
    for copied in _round_trips(model):
        assert copied.tokenizer.encode("a red circle") == model.tokenizer.encode("a red circle")
        assert copied.layout == model.layout
        assert torch.equal(copied(idx, seg), expected_logits)
        assert torch.equal(copied.generate(idx, seg, 8, greedy=True), expected_tokens)
        assert copied.tok_emb.weight.data_ptr() != model.tok_emb.weight.data_ptr()


def test_augvae_deepcopy_pickle_torch_save():
    model = sl_vae().eval()
    x = images()
    expected_ids, (expected_recon, _) = model.encode(x), model(x)
    for copied in _round_trips(model):
        assert torch.equal(copied.encode(x), expected_ids)
        assert torch.equal(copied(x)[0], expected_recon)
        # Tied tensors stay tied in the copy.
        assert copied.quantizers[1].embedding.weight is copied.quantizers[0].embedding.weight
        assert copied.pre_quants[1].weight is copied.pre_quants[0].weight


def test_averaged_model_ema():
    model = small_biart()
    ema = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.9))
    ema.update_parameters(model)  # the first update copies
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update_parameters(model)
    idx, seg = ids()
    assert torch.allclose(ema.module.tok_emb.weight, model.tok_emb.weight - 0.9, atol=1e-6)
    assert ema(idx, seg).shape == (3, 12, V)
    assert ema.module.generate(idx[:, :4], seg[:, :4] * 0, 4, greedy=True).shape == (3, 4)


def test_quantize_dynamic_runs_forward_and_native_refuses():
    model = small_biart().eval()
    quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    idx, seg = ids()
    assert (quantized(idx, seg) - model(idx, seg)).abs().max().item() < 0.1
    with pytest.raises(NativePathError, match=r"blocks.0.attn.key is a .*Linear, not a Linear"):
        quantized.generate(idx[:, :4], seg[:, :4] * 0, 4, greedy=True)


# --- autocast ---------------------------------------------------------------------------

def test_autocast_bf16_training_step_biart():
    model = small_biart()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    idx, seg = ids()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(idx, seg)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1).float(), idx.flatten())
    assert logits.dtype == torch.bfloat16
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and model.tok_emb.weight.grad.dtype == torch.float32


def test_autocast_bf16_training_step_augvae_keeps_vq_fp32():
    model = sl_vae().train()
    embedding = model.quantizers[0].embedding
    before = embedding.weight.clone()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    x = images()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        recon, commitment = model(x)
        loss = nn.functional.mse_loss(recon.float(), x) + commitment
    assert commitment.dtype == torch.float32  # distances and commitment in fp32
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert embedding.weight.dtype == embedding.cluster_size.dtype == torch.float32
    assert not torch.equal(embedding.weight, before) and embedding.cluster_size.sum() > 0


def test_bf16_modules_train_and_run_natively():
    model = small_biart().to(torch.bfloat16)
    idx, seg = ids()
    model(idx, seg).float().sum().backward()
    assert model.head.weight.grad.dtype == torch.bfloat16
    assert model.eval().generate(idx[:, :4], seg[:, :4] * 0, 4, greedy=True).shape == (3, 4)
    vae = sl_vae().to(torch.bfloat16).train()
    x = images().bfloat16()
    recon, commitment = vae(x)
    (recon.float().mean() + commitment.float()).backward()
    assert vae.eval().encode(x).shape == (2, 64)


# --- activation checkpointing -------------------------------------------------------------

def _biart_loss(model, idx, seg):
    return model(idx, seg).square().mean()


def test_whole_model_checkpointing_gives_plain_gradients():
    model = small_biart().train()
    idx, seg = ids()
    _biart_loss(model, idx, seg).backward()
    plain = grads(model)
    model.zero_grad()
    checkpoint(model, idx, seg, use_reentrant=False).square().mean().backward()
    assert max_grad_diff(grads(model), plain) < 1e-5


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_per_block_checkpointing_gives_plain_gradients(use_reentrant):
    # Reentrant checkpointing needs a float input that requires grad, so it wraps blocks
    # (whose input is the embedded sequence), not the whole model (whose input is ids).
    model = small_biart().train()
    idx, seg = ids()
    _biart_loss(model, idx, seg).backward()
    plain = grads(model)
    model.zero_grad()
    for block in model.blocks:
        block.forward = _checkpointed(block.forward, use_reentrant)
    _biart_loss(model, idx, seg).backward()
    assert max_grad_diff(grads(model), plain) < 1e-5
    # The native sampler sees the instance-level override and refuses.
    with pytest.raises(NativePathError, match=r"blocks.0.forward replaced on the instance"):
        model.generate(idx[:, :4], seg[:, :4] * 0, 2)


def _checkpointed(forward, use_reentrant=False):
    return lambda x: checkpoint(forward, x, use_reentrant=use_reentrant)


def test_augvae_level_checkpointing_gives_plain_gradients():
    model = sl_vae().train()
    model.ema_update = False  # the same codebook for both passes
    x = images()
    recon, commitment = model(x)
    (recon.square().mean() + commitment).backward()
    plain = grads(model)
    model.zero_grad()
    for level in model.encoders[0].down:
        level.forward = _checkpointed(level.forward)
    recon, commitment = model(x)
    (recon.square().mean() + commitment).backward()
    assert max_grad_diff(grads(model), plain) < 1e-5


# --- hooks, adapters, parametrizations ------------------------------------------------------

def test_forward_hook_on_a_block_fires_and_native_refuses():
    model = small_biart().eval()
    seen = []
    handle = model.blocks[0].register_forward_hook(lambda mod, args, out: seen.append(out.shape))
    idx, seg = ids()
    model(idx, seg)
    assert seen == [torch.Size([3, 12, 32])]
    with pytest.raises(NativePathError, match="a forward hook on blocks.0"):
        model.generate(idx[:, :4], seg[:, :4] * 0, 2)
    handle.remove()
    model.generate(idx[:, :4], seg[:, :4] * 0, 2)


def test_augvae_hook_fires_and_native_refuses():
    model = sl_vae().eval()
    seen = []
    model.encoders[0].down[0].block[0].register_forward_hook(lambda mod, args, out: seen.append(out.shape))
    model(images())
    assert seen == [torch.Size([2, 32, 32, 32])]
    with pytest.raises(NativePathError, match=r"a forward hook on encoders.0.down.0.block.0"):
        model.encode(images())


def test_lora_adapter_changes_forward_and_the_sampler_refuses():
    model = small_biart().eval()
    idx, seg = ids()
    before = model(idx, seg)
    model.blocks[0].attn.query = LoraLinear(model.blocks[0].attn.query)
    after = model(idx, seg)
    assert (after - before).abs().max().item() > 1e-3
    for call in (lambda: model.generate(idx[:, :4], seg[:, :4] * 0, 2),
                 lambda: model.beam_search(idx[:, :4], seg[:, :4] * 0, 2, token_range=(0, V)),
                 lambda: model.cached_logits(idx, seg)):
        with pytest.raises(NativePathError, match=r"blocks.0.attn.query is a .*LoraLinear.*merge_and_unload"):
            call()
    # Merged back into the weights, the native sampler honours it: the forward's greedy tokens.
    lora = model.blocks[0].attn.query
    merged = nn.Linear(32, 32)
    with torch.no_grad():
        merged.weight.copy_(lora.base_layer.weight + lora.lora_B.weight @ lora.lora_A.weight)
        merged.bias.copy_(lora.base_layer.bias)
    model.blocks[0].attn.query = merged
    assert (model(idx, seg) - after).abs().max().item() < 1e-5
    prefix, pseg = idx[:, :4], seg[:, :4] * 0
    assert torch.equal(model.generate(prefix, pseg, 12, greedy=True), greedy_loop(model, prefix, pseg, 12))


def test_peft_lora_on_query_and_value():
    peft = pytest.importorskip("peft")
    model = small_biart().eval()
    idx, seg = ids()
    before = model(idx, seg)
    adapted = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=["query", "value"],
                                                         init_lora_weights=False))
    with torch.no_grad():
        after = adapted(idx, seg)
    assert (after - before).abs().max().item() > 1e-4
    with pytest.raises(NativePathError, match=r"blocks.0.attn.query is a peft"):
        adapted.base_model.model.generate(idx[:, :4], seg[:, :4] * 0, 2)
    merged = adapted.merge_and_unload()
    assert (merged(idx, seg) - after).abs().max().item() < 1e-5
    prefix, pseg = idx[:, :4], seg[:, :4] * 0
    assert torch.equal(merged.generate(prefix, pseg, 12, greedy=True), greedy_loop(merged, prefix, pseg, 12))


def test_extra_parameter_and_parametrization_are_refused():
    model = small_biart().eval()
    idx, seg = ids(t=4)
    model.blocks[0].attn.query.register_parameter("scale", nn.Parameter(torch.ones(32)))
    with pytest.raises(NativePathError, match=r"an extra tensor blocks.0.attn.query.scale \(32,\)"):
        model.generate(idx, seg * 0, 2)
    del model.blocks[0].attn.query.scale
    torch.nn.utils.parametrizations.weight_norm(model.blocks[1].mlp[0])
    with pytest.raises(NativePathError, match=r"a parametrization of blocks.1.mlp.0 \(weight\)"):
        model.generate(idx, seg * 0, 2)
    vae = sl_vae()
    torch.nn.utils.parametrizations.weight_norm(vae.decoders[0].conv_in)
    with pytest.raises(NativePathError, match=r"a parametrization of decoders.0.conv_in"):
        vae.decode(torch.zeros(1, 64, dtype=torch.long))


# --- compile, export, vmap ------------------------------------------------------------------

def test_compile_fullgraph_biart_matches_eager():
    model = small_biart().train()
    idx, seg = ids()
    _biart_loss(model, idx, seg).backward()
    eager_out, eager_grads = model(idx, seg).detach(), grads(model)
    model.zero_grad()
    compiled = torch.compile(model, fullgraph=True)
    out = compiled(idx, seg)
    out.square().mean().backward()
    assert (out.detach() - eager_out).abs().max().item() < 1e-4
    assert max_grad_diff(grads(model), eager_grads) < 1e-4


def test_compile_fullgraph_augvae_matches_eager():
    model = sl_vae().train()
    model.ema_update = False
    x = images()
    recon, commitment = model(x)
    (recon.square().mean() + commitment).backward()
    eager_recon, eager_grads = recon.detach(), grads(model)
    model.zero_grad()
    compiled = torch.compile(model, fullgraph=True)
    recon, commitment = compiled(x)
    (recon.square().mean() + commitment).backward()
    assert (recon.detach() - eager_recon).abs().max().item() < 1e-4
    assert max_grad_diff(grads(model), eager_grads) < 1e-4


def test_compile_fullgraph_ema_update_matches_eager():
    eager, compiled_model = sl_vae().train(), sl_vae().train()
    x = images()
    eager(x)
    torch.compile(compiled_model, fullgraph=True)(x)
    for name in ("weight", "cluster_size", "embed_avg"):
        a = getattr(eager.quantizers[0].embedding, name)
        b = getattr(compiled_model.quantizers[0].embedding, name)
        assert (a - b).abs().max().item() < 1e-4, name


def test_export_biart_and_augvae():
    model = small_biart().eval()
    idx, seg = ids()
    program = torch.export.export(model, (idx, seg))
    assert (program.module()(idx, seg) - model(idx, seg)).abs().max().item() < 1e-5
    vae = sl_vae().eval()
    x = images()
    program = torch.export.export(vae, (x,))
    assert "lverse.vq_nearest" in program.graph_module.print_readable(print_output=False)
    assert (program.module()(x)[0] - vae(x)[0]).abs().max().item() < 1e-5


def test_vmap_works_or_raises_an_ordinary_exception():
    model = small_biart().eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    idx, seg = ids()
    stacked = torch.stack([idx, idx.flip(0)])

    def run(i):
        return torch.func.functional_call(model, params, (i, seg))

    out = torch.func.vmap(run)(stacked)
    assert (out[1] - model(idx.flip(0), seg)).abs().max().item() < 1e-5
    vae = sl_vae().eval()
    try:
        torch.func.vmap(vae)(images().unsqueeze(0))
    except Exception as err:  # a PanicException (BaseException) would escape this
        assert "vq_nearest" in str(err) or "vmap" in str(err)


# --- what else the guard catches; EMA under checkpointing and in half precision --------------

@pytest.mark.parametrize("change, found", [
    (lambda m: setattr(m.blocks[0].ln1, "eps", 10.0), r"blocks.0.ln1.eps = 10.0 \(built with 1e-05\)"),
    (lambda m: setattr(m.blocks[1].mlp[1], "approximate", "tanh"), r"blocks.1.mlp.1.approximate = 'tanh'"),
    (lambda m: setattr(m.blocks[0].attn, "n_head", 1), r"blocks.0.attn.n_head = 1 \(built with 4\)"),
    (lambda m: setattr(m, "config", dataclasses.replace(m.config, n_head=2)), r"config = BiARTConfig\("),
])
def test_changed_settings_are_refused(change, found):
    model = small_biart().eval()
    idx, seg = ids(t=4)
    change(model)
    with pytest.raises(NativePathError, match=found):
        model.generate(idx, seg * 0, 2)


def test_a_class_level_forward_patch_is_refused(monkeypatch):
    model = small_biart().eval()
    idx, seg = ids(t=4)
    monkeypatch.setattr(lverse.biart_layers.Block, "forward", lambda self, x: x)
    with pytest.raises(NativePathError, match=r"Block.forward replaced on the class"):
        model.generate(idx, seg * 0, 2)


def test_changed_convolution_is_refused_by_encode():
    vae = sl_vae().eval()
    vae.encoders[0].conv_in.padding_mode = "reflect"
    with pytest.raises(NativePathError, match=r"encoders.0.conv_in.padding_mode = 'reflect'"):
        vae.encode(images())


def test_training_only_settings_are_allowed():
    vae = sl_vae().eval()
    vae.quantizers[0].embedding.decay = 0.5
    vae.ema_update = False
    for m in vae.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.3
    assert vae.encode(images()).shape == (2, 64)


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_checkpointing_across_the_ema_update_is_refused(use_reentrant):
    vae = sl_vae().train()
    x = images().requires_grad_(use_reentrant)
    recon, commitment = checkpoint(vae, x, use_reentrant=use_reentrant)
    with pytest.raises(RuntimeError, match="EMA codebook update ran again during backward"):
        (recon.mean() + commitment).backward()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_ema_counts_do_not_saturate(dtype):
    vae = sl_vae().to(dtype)
    embedding = vae.quantizers[0].embedding
    with torch.no_grad():
        embedding.cluster_size.zero_()
        embedding.update(torch.randn(3000, 16).to(dtype), torch.zeros(3000, dtype=torch.long))
    # 0.01 of 3000 hits; a count accumulated in bf16 stops at 256, in fp16 at 2048.
    assert embedding.cluster_size[0].item() == pytest.approx(30.0, rel=1e-2)
    assert embedding.cluster_size.dtype == dtype


def test_save_refuses_weights_the_user_untied(tmp_path):
    vae = sl_vae()
    vae.pre_quants[1].weight = nn.Parameter(torch.full_like(vae.pre_quants[0].weight, 0.5))
    with pytest.raises(lverse.CheckpointError, match="pre_quants.1.weight is no longer pre_quants.0.weight"):
        vae.save(tmp_path / "vae.safetensors")
    assert not (tmp_path / "vae.safetensors").exists()


def test_a_seed_gives_the_cores_initial_values():
    # The first tensor the core initialises is pos_emb, N(0, 0.02): the layers' own default
    # initialisation must not consume the seeded generator before it.
    torch.manual_seed(0)
    model = BiART(V, T, n_layer=2, n_head=4, n_embd=32)
    torch.manual_seed(0)
    assert torch.equal(model.pos_emb.detach(), torch.randn(1, T, 32) * 0.02)


def test_compile_dynamic_shapes_augvae():
    # Automatic dynamic shapes (a second input size, or dynamic=True) must compile too.
    model = sl_vae().train()
    model.ema_update = False
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    for size in (32, 48):
        x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(size)) * 2 - 1
        recon, commitment = compiled(x)
        (recon.square().mean() + commitment).backward()
        eager_recon, _ = model(x)
        assert (recon.detach() - eager_recon.detach()).abs().max().item() < 1e-4
