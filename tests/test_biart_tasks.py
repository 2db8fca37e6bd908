"""The token layout and the two directions on ids: generation, scores, self-reranking."""

import pytest
import torch
from lverse import BiART
from lverse.layout import TokenLayout
from lverse.tasks import generate_caption_ids, generate_image_ids, rerank, rerank_captions, score

from .reference_mingpt import ReferenceBiART

LAYOUT = TokenLayout(text_vocab=20, image_vocab=16, text_len=6, image_len=9)


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = BiART(LAYOUT.vocab_size, LAYOUT.block_size, n_layer=2, n_head=2, n_embd=32).eval()
    return m


def test_layout_numbers():
    assert (LAYOUT.pad, LAYOUT.soc, LAYOUT.soi, LAYOUT.eoc) == (36, 37, 38, 39)
    assert LAYOUT.vocab_size == 40 and LAYOUT.block_size == 17
    assert LAYOUT.image_range == (20, 36)
    assert LAYOUT.caption_ids([3, 4]) == [3, 4, 39, 36, 36, 36]
    assert LAYOUT.caption_tokens([3, 4, 39, 36, 36, 36]) == [3, 4]
    with pytest.warns(UserWarning, match="caption of 7 tokens truncated to 5"):
        assert LAYOUT.caption_ids(list(range(7))) == [0, 1, 2, 3, 4, 39]
    with pytest.raises(ValueError, match=r"text id 25 is outside the text vocabulary \[0, 20\)"):
        LAYOUT.caption_ids([25])
    with pytest.raises(ValueError, match="text_len must leave room"):
        TokenLayout(5, 5, 1, 4)


def test_sequences_and_segments():
    text = torch.tensor([LAYOUT.caption_ids([1, 2])])
    image = torch.arange(9).view(1, 9)
    idx, seg = LAYOUT.text_to_image(text, image)
    assert idx[0].tolist() == [37, 1, 2, 39, 36, 36, 36, 38] + list(range(20, 29))
    assert seg[0].tolist() == [0] * 8 + [1] * 9
    idx, seg = LAYOUT.image_to_text(image, text)
    assert idx[0].tolist() == [38] + list(range(20, 29)) + [37, 1, 2, 39, 36, 36, 36]
    assert seg[0].tolist() == [0] * 11 + [1] * 6
    with pytest.raises(ValueError, match=r"expected image ids of shape \(B, 9\)"):
        LAYOUT.image_to_text(torch.zeros(1, 8, dtype=torch.long))


def test_image_generation_shapes_ranges_and_seeds(model):
    text = torch.tensor([LAYOUT.caption_ids([1, 2]), LAYOUT.caption_ids([5])])
    ids = generate_image_ids(model, LAYOUT, text, candidates=3, seed=4, top_k=8)
    assert ids.shape == (2, 3, 9)
    assert ids.min() >= 0 and ids.max() < 16
    assert torch.equal(ids, generate_image_ids(model, LAYOUT, text, candidates=3, seed=4, top_k=8))
    with pytest.raises(ValueError, match="candidates must be a positive int, got 0"):
        generate_image_ids(model, LAYOUT, text, candidates=0)


def test_captions_end_in_eoc_and_pad(model):
    image = torch.randint(0, 16, (4, 9))
    for kwargs in (dict(), dict(beams=3), dict(greedy=False, seed=1, top_p=0.9)):
        caps = generate_caption_ids(model, LAYOUT, image, **kwargs)
        assert caps.shape == (4, 6)
        for row in caps.tolist():
            legal = set(range(20)) | {39}
            if 39 in row:
                end = row.index(39)
                assert all(t in legal for t in row[:end]) and all(t == 36 for t in row[end + 1 :])
            else:
                assert all(t in legal for t in row)
    assert torch.equal(generate_caption_ids(model, LAYOUT, image, beams=1),
                       generate_caption_ids(model, LAYOUT, image))


def loop_log_likelihood(reference, prefix_idx, prefix_seg, targets, legal_ids, stop=None):
    """Token-by-token log-likelihood with the uncached reference model."""
    total = torch.zeros(targets.shape[0], dtype=torch.float64)
    for b in range(targets.shape[0]):
        idx, seg = prefix_idx[b : b + 1], prefix_seg[b : b + 1]
        for t in targets[b].tolist():
            logits = reference(idx, seg)[0, -1]
            mask = torch.full_like(logits, float("-inf"))
            mask[legal_ids] = 0
            total[b] += (logits + mask).log_softmax(-1)[t].double()
            if t == stop:
                break
            idx = torch.cat([idx, torch.tensor([[t]])], 1)
            seg = torch.cat([seg, torch.tensor([[1]])], 1)
    return total


def test_scores_match_a_token_by_token_loop(model):
    reference = ReferenceBiART(LAYOUT.vocab_size, LAYOUT.block_size, 2, 2, 32).eval()
    reference.load_state_dict(model.state_dict())
    text = torch.tensor([LAYOUT.caption_ids([1, 2]), LAYOUT.caption_ids([5, 6, 7])])
    image = torch.randint(0, 16, (2, 9))
    got = score(model, LAYOUT, text, image, given="image")
    idx, seg = LAYOUT.image_to_text(image)
    caption_legal = list(range(20)) + [39]
    expected = loop_log_likelihood(reference, idx, seg, text, caption_legal, stop=39)
    assert torch.allclose(got.double(), expected, atol=1e-4)
    got = score(model, LAYOUT, text, image, given="text")
    idx, seg = LAYOUT.text_to_image(text)
    expected = loop_log_likelihood(reference, idx, seg, image + 20, list(range(20, 36)))
    assert torch.allclose(got.double(), expected, atol=1e-4)
    with pytest.raises(ValueError, match="given must be 'image' or 'text'"):
        score(model, LAYOUT, text, image, given="both")


def test_rerank_orders_by_caption_likelihood(model):
    text = torch.tensor([LAYOUT.caption_ids([1, 2])])
    candidates = generate_image_ids(model, LAYOUT, text, candidates=5, seed=0)
    order, scores = rerank(model, LAYOUT, text, candidates)
    assert order.shape == (1, 5)
    assert scores[0, order[0, 0]] == scores.max()
    direct = score(model, LAYOUT, text.repeat(5, 1), candidates[0], given="image")
    assert torch.allclose(direct, scores[0])


def test_rerank_captions_orders_by_image_likelihood(model):
    torch.manual_seed(3)
    image = torch.randint(0, 16, (2, 9))
    candidates = generate_caption_ids(model, LAYOUT, image.repeat_interleave(4, 0), greedy=False, seed=1).view(2, 4, -1)
    order, scores = rerank_captions(model, LAYOUT, image, candidates)
    assert order.shape == (2, 4)
    for row in range(2):
        direct = score(model, LAYOUT, candidates[row], image[row].expand(4, -1), given="text")
        assert torch.allclose(direct, scores[row])
        assert order[row].tolist() == direct.argsort(descending=True, stable=True).tolist()


def test_checkpoint_carries_layout_and_tokenizer(tmp_path):
    from lverse import Tokenizer

    captions = ["a small red circle at the top", "a large blue square left of a small green cross"] * 20
    tok = Tokenizer.train(captions, 600)
    layout = TokenLayout(text_vocab=tok.vocab_size, image_vocab=16, text_len=12, image_len=9)
    model = BiART.for_layout(layout, tok, n_layer=1, n_head=2, n_embd=16)
    path = tmp_path / "biart.safetensors"
    model.save(path, metadata={"trained_steps": 5})
    loaded = BiART.from_checkpoint(path)
    assert loaded.layout == layout
    assert loaded.tokenizer.encode(captions[1]) == tok.encode(captions[1])
    assert loaded.metadata == {"trained_steps": 5}
    with pytest.raises(ValueError, match="layout needs vocab_size"):
        BiART(10, 30, n_layer=1, n_head=1, n_embd=8).attach(layout, tok)


def test_caption_text_round_trip():
    from lverse import Tokenizer

    captions = ["a small red circle at the top", "a large blue square left of a small green cross"] * 20
    tok = Tokenizer.train(captions, 600)
    layout = TokenLayout(text_vocab=tok.vocab_size, image_vocab=16, text_len=12, image_len=9)
    parts = layout.encode_captions(tok, captions[:2])
    assert parts.shape == (2, 12)
    assert (parts == layout.eoc).sum(1).tolist() == [1, 1]
    assert layout.decode_captions(tok, parts) == [tok.decode(tok.encode(c)) for c in captions[:2]]
    with pytest.raises(ValueError, match="text is empty"):
        layout.encode_captions(tok, ["  "])
    with pytest.raises(TypeError):
        layout.encode_captions(tok, [3])
    short = TokenLayout(text_vocab=tok.vocab_size, image_vocab=16, text_len=3, image_len=9)
    with pytest.warns(UserWarning, match="truncated to 2"):
        short.encode_captions(tok, captions[1])
