"""BiART against the plain minGPT reference, the KV cache against no cache, and the
sampler against hand-computed distributions."""

import math
import signal
import threading
import time

import lverse
import pytest
import torch
from lverse import BiART

from .conftest import cuda
from .reference_mingpt import ReferenceBiART, beam_search_loop, controlled_logits_model, greedy_loop

V, T, L, H, D = 50, 40, 2, 4, 32


@pytest.fixture
def pair():
    torch.manual_seed(0)
    model = BiART(V, T, n_layer=L, n_head=H, n_embd=D, embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0)
    reference = ReferenceBiART(V, T, L, H, D)
    reference.load_state_dict(model.state_dict(), strict=True)
    return model, reference


def batch(b=3, t=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, V, (b, t), generator=g)
    seg = (torch.arange(t) >= t // 2).long().expand(b, t).contiguous()
    return idx, seg


def test_names_are_mingpt_plus_seg_emb(pair):
    model, reference = pair
    assert sorted(model.state_dict()) == sorted(reference.state_dict())
    assert model.state_dict()["blocks.0.attn.mask"].shape == (1, 1, T, T)
    assert "head.bias" not in model.state_dict()
    n = sum(p.numel() for p in model.parameters())
    assert n == L * (12 * D * D + 13 * D) + (V + T + 2) * D + 2 * D + V * D  # SPEC §4.1


def test_reference_state_dict_loads_strict():
    reference = ReferenceBiART(V, T, L, H, D)
    model = BiART(V, T, n_layer=L, n_head=H, n_embd=D)
    model.load_state_dict(reference.state_dict(), strict=True)


def test_logits_match_reference(pair):
    model, reference = pair
    model.eval()
    idx, seg = batch()
    out = model(idx, seg)
    assert out.shape == (3, 12, V)
    assert (out - reference(idx, seg)).abs().max() < 1e-5


def test_gradients_match_reference(pair):
    model, reference = pair
    idx, seg = batch()
    targets = torch.randint(0, V, idx.shape)
    for m in (model, reference):
        loss = torch.nn.functional.cross_entropy(m(idx, seg).reshape(-1, V), targets.reshape(-1))
        loss.backward()
    ref = dict(reference.named_parameters())
    for name, p in model.named_parameters():
        g, rg = p.grad, ref[name].grad
        assert (g - rg).abs().max() <= 1e-4 * rg.abs().max() + 1e-9, name


def test_dropout_only_in_train_mode():
    torch.manual_seed(0)
    model = BiART(V, T, n_layer=L, n_head=H, n_embd=D)  # minGPT's 0.1 dropouts
    idx, seg = batch()
    model.train()
    assert not torch.equal(model(idx, seg), model(idx, seg))
    model.eval()
    assert torch.equal(model(idx, seg), model(idx, seg))


@pytest.mark.parametrize("prefix", [1, 5, 12])
def test_cached_logits_equal_uncached_at_every_step(pair, prefix):
    model, _ = pair
    model.eval()
    idx, seg = batch(t=12)
    full = model(idx, seg)[:, prefix - 1 :]
    cached = model.cached_logits(idx, seg, prefix)
    assert cached.shape == full.shape
    assert (cached - full).abs().max() <= 1e-5


def test_greedy_equals_uncached_reference_loop(pair):
    model, reference = pair
    model.eval()
    idx, seg = batch(t=6)
    seg = torch.zeros_like(seg)
    ours = model.generate(idx, seg, 20, greedy=True)
    assert torch.equal(ours, greedy_loop(reference, idx, seg, 20))
    ranged = model.generate(idx, seg, 20, greedy=True, token_range=(10, 30))
    assert torch.equal(ranged, greedy_loop(reference, idx, seg, 20, token_range=(10, 30)))


def test_beam_width_one_is_greedy(pair):
    model, _ = pair
    model.eval()
    idx, seg = batch(t=6)
    tokens, scores = model.beam_search(idx, seg, 15, beams=1, token_range=(5, 45))
    assert torch.equal(tokens, model.generate(idx, seg, 15, greedy=True, token_range=(5, 45)))
    # The score is the summed log-probability of the chosen tokens over the legal range.
    full_idx = torch.cat([idx, tokens], 1)
    full_seg = torch.cat([seg, torch.ones_like(tokens)], 1)
    logp = model(full_idx, full_seg)[:, 5:-1, 5:45].log_softmax(-1)
    expected = logp.gather(-1, (tokens - 5).unsqueeze(-1)).sum((1, 2))
    assert torch.allclose(scores.float(), expected, atol=1e-4)


@pytest.mark.parametrize("width", [2, 4])
def test_beam_search_equals_uncached_reference(pair, width):
    model, reference = pair
    model.eval()
    idx, seg = batch(t=6)
    tokens, scores = model.beam_search(idx, seg, 8, beams=width, token_range=(5, 45))
    want_tokens, want_scores = beam_search_loop(reference, idx, seg, 8, width, (5, 45))
    assert torch.equal(tokens, want_tokens)
    assert (scores.double() - want_scores).abs().max() < 1e-4


def test_wider_beams_score_at_least_greedy(pair):
    model, _ = pair
    model.eval()
    idx, seg = batch(t=6)
    _, s1 = model.beam_search(idx, seg, 10, beams=1)
    _, s4 = model.beam_search(idx, seg, 10, beams=4)
    assert (s4 >= s1 - 1e-9).all()


def frequencies(tokens, vocab):
    return torch.bincount(tokens.flatten(), minlength=vocab).double() / tokens.numel()


def test_temperature_top_k_top_p_match_hand_computed():
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, 3.0, 2.0, -2.0])
    model = controlled_logits_model(BiART, logits)
    idx = torch.zeros(4000, 1, dtype=torch.long)
    seg = torch.zeros_like(idx)
    # temperature 2 -> top_k 4 (keeps 3.0, 2.0, 2.0 and 1.0) -> top_p 0.8
    tokens = model.generate(idx, seg, 1, temperature=2.0, top_k=4, top_p=0.8, seed=0)
    scaled = logits / 2.0
    kept = scaled >= scaled.sort(descending=True).values[3]
    probs = torch.where(kept, scaled.exp(), torch.zeros(())).double()
    probs /= probs.sum()
    order = probs.argsort(descending=True, stable=True)
    cumulative = probs[order].cumsum(0)
    cut = int((cumulative < 0.8).sum()) + 1
    nucleus = torch.zeros_like(probs)
    nucleus[order[:cut]] = probs[order[:cut]]
    nucleus /= nucleus.sum()
    observed = frequencies(tokens, 8)
    assert set(tokens.unique().tolist()) <= set(order[:cut].tolist())
    assert (observed - nucleus).abs().max() < 0.03, (observed, nucleus)


def test_plain_sampling_matches_softmax():
    logits = torch.tensor([0.0, 1.0, 2.0, -1.0])
    model = controlled_logits_model(BiART, logits)
    idx = torch.zeros(6000, 1, dtype=torch.long)
    tokens = model.generate(idx, torch.zeros_like(idx), 1, seed=3)
    assert (frequencies(tokens, 4) - logits.double().softmax(0)).abs().max() < 0.02


def test_seeds_reproduce_and_ranges_hold(pair):
    model, _ = pair
    model.eval()
    idx, seg = batch(t=4)
    a = model.generate(idx, seg, 30, seed=11, token_range=(20, 40), top_k=10)
    b = model.generate(idx, seg, 30, seed=11, token_range=(20, 40), top_k=10)
    c = model.generate(idx, seg, 30, seed=12, token_range=(20, 40), top_k=10)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 20 and a.max() < 40


def test_stop_token_ends_each_row():
    logits = torch.tensor([0.0, 0.0, 0.0, 2.5])  # token 3 (the stop) is likely
    model = controlled_logits_model(BiART, logits)
    idx = torch.zeros(64, 1, dtype=torch.long)
    out = model.generate(idx, torch.zeros_like(idx), 10, seed=5, stop_token=3, pad_token=0)
    for row in out.tolist():
        if 3 in row:
            stop = row.index(3)
            assert all(t == 0 for t in row[stop + 1 :])
    assert any(row.index(3) < 9 for row in out.tolist() if 3 in row)


def test_progress_callback():
    model = BiART(V, T, n_layer=1, n_head=2, n_embd=16).eval()
    idx, seg = batch(t=3)
    seen = []
    model.generate(idx, seg, 5, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 5) for i in range(1, 6)]

    def stop(done, total):
        raise KeyError("cancelled")

    # The callback's own exception comes back, so a caller can cancel with any type.
    with pytest.raises(KeyError, match="cancelled"):
        model.generate(idx, seg, 5, progress=stop)
    with pytest.raises(TypeError, match="progress must be callable"):
        model.generate(idx, seg, 5, progress=5)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(top_p=0.0), ValueError, r"top_p must be in \(0, 1\], got 0"),
        (dict(top_p=1.5), ValueError, r"top_p must be in \(0, 1\], got 1.5"),
        (dict(top_k=0), ValueError, "top_k must be >= 1, got 0"),
        (dict(temperature=0.0), ValueError, "temperature must be > 0, got 0"),
        (dict(temperature=-1.0), ValueError, "temperature must be > 0"),
        (dict(token_range=(40, 60)), ValueError, r"token_range must satisfy 0 <= lo < hi <= 50, got \(40, 60\)"),
        (dict(steps=40), ValueError, "a prefix of 4 tokens plus 40 steps exceeds the block size 40"),
    ],
)
def test_bad_sampling_options(kwargs, error, match):
    model = BiART(V, T, n_layer=1, n_head=2, n_embd=16).eval()
    idx, seg = batch(t=4)
    steps = kwargs.pop("steps", 5)
    with pytest.raises(error, match=match):
        model.generate(idx, seg, steps, **kwargs)


def test_bad_ids():
    model = BiART(V, T, n_layer=1, n_head=2, n_embd=16).eval()
    idx, seg = batch(t=4)
    with pytest.raises(ValueError, match=r"token id 50 is outside the vocabulary \[0, 50\)"):
        model(torch.full((1, 4), 50), torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="segment id 2 is not 0"):
        model(idx, seg * 2)
    with pytest.raises(TypeError, match="expected int64 token ids, got Int"):
        model(idx.int(), seg)
    with pytest.raises(ValueError, match="sequence of 41 tokens exceeds the block size 40"):
        model(torch.zeros(1, 41, dtype=torch.long), torch.zeros(1, 41, dtype=torch.long))
    with pytest.raises(ValueError, match="segment ids must have the token ids' shape"):
        model(idx, seg[:, :2])
    with pytest.raises(TypeError, match="idx must be a torch.Tensor, got list"):
        model.generate([[1, 2]], seg, 3)
    with pytest.raises(TypeError, match="steps must be an int"):
        model.generate(idx, seg, 2.5)
    with pytest.raises(ValueError, match="n_embd \\(30\\) must be divisible by n_head \\(4\\)"):
        BiART(V, T, n_layer=1, n_head=4, n_embd=30)


def test_checkpoint_round_trip(tmp_path, pair):
    model, _ = pair
    path = tmp_path / "biart.safetensors"
    model.save(path, metadata={"note": "x"})
    loaded = BiART.from_checkpoint(path)
    assert loaded.config == model.config
    idx, seg = batch()
    model.eval()
    assert torch.equal(loaded(idx, seg), model(idx, seg))
    with pytest.raises(lverse.CheckpointError, match="expected an lverse biart checkpoint"):
        BiART.from_checkpoint(_augvae_file(tmp_path))


def _augvae_file(tmp_path):
    from .conftest import make_pair

    vae, _ = make_pair(single_level=1)
    path = tmp_path / "vae.safetensors"
    vae.save(path)
    return path


@cuda
def test_cuda_generation_matches_cpu(pair):
    model, _ = pair
    model.eval()
    idx, seg = batch(t=4)
    cpu = model.generate(idx, seg, 10, greedy=True)
    gpu = model.cuda().generate(idx.cuda(), seg.cuda(), 10, greedy=True)
    assert torch.equal(gpu.cpu(), cpu)
    assert not math.isnan(float(model.cuda()(idx.cuda(), seg.cuda()).sum()))


def test_safetensors_header_starting_like_a_pickle_loads(tmp_path):
    # A safetensors file begins with its header length; when its low byte is 0x80 (a
    # pickle's first byte) the file must still be read as safetensors.
    model = BiART(V, T, n_layer=1, n_head=2, n_embd=16)
    path = tmp_path / "b.safetensors"
    for pad in range(400):
        model.save(path, metadata={"pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert BiART.from_checkpoint(path).metadata["pad"] == "x" * pad


def _send_sigint_later(delay: float, sent: list) -> threading.Timer:
    def interrupt():
        sent.append(time.perf_counter())
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    timer = threading.Timer(delay, interrupt)
    timer.start()
    return timer


# Models whose full run takes seconds on one CPU thread, in steps of a few ms (measured on
# 2 cores: generate about 6 s, beam search about 7 s, each step 2-10 ms).
LONG_RUNS = {
    "generate": (dict(vocab_size=512, block_size=1024, n_embd=256), 4, {"greedy": True}),
    "beam_search": (dict(vocab_size=512, block_size=768, n_embd=128), 2, {"beams": 4}),
}


@pytest.mark.parametrize("method", ["generate", "beam_search"])
def test_ctrl_c_stops_decoding(method):
    """Ctrl-C (SIGINT) in the main thread stops a long generation or beam search within a
    fraction of a second with KeyboardInterrupt, and leaves the model usable."""
    sizes, rows, options = LONG_RUNS[method]
    torch.manual_seed(0)
    model = BiART(**sizes, n_layer=4, n_head=4).eval()
    idx = torch.randint(0, sizes["vocab_size"], (rows, 8))
    seg = torch.zeros_like(idx)
    run = getattr(model, method)
    threads = torch.get_num_threads()
    # One thread: on a busy machine OpenMP's barriers can make a step take far longer.
    torch.set_num_threads(1)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    sent: list[float] = []
    timer = _send_sigint_later(0.3, sent)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(idx, seg, sizes["block_size"] - 8, **options)
        stopped = time.perf_counter()
    finally:
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGINT, previous)
        torch.set_num_threads(threads)
    assert sent, "the run ended before the signal was sent"
    assert stopped - sent[0] < 1.0, f"stopped {stopped - sent[0]:.2f} s after SIGINT"
    # The model is not left in a broken state.
    out = run(idx, seg, 2, **options)
    assert (out[0] if method == "beam_search" else out).shape == (rows, 2)
