"""``python -m lverse train-biart``: train BiART on (image, caption) pairs with a plain
PyTorch loop. Images come as codes made once by ``python -m lverse tokenize``
(``--data codes:DIR``), or are encoded by the frozen AugVAE at every step; every pair is
used in one direction drawn 50/50 (text-to-image or image-to-text) and the loss is taken on
the part being generated (a caption up to and including EOC). Writes a model directory
that ``lverse.load`` opens. Runs under ``torchrun`` with DDP.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..augvae import AugVAE
from ..biart import BiART
from ..cli._args import fraction, nonnegative_int, positive_float, positive_int
from ..errors import CheckpointError
from ..layout import TokenLayout
from ..pipeline import save_model_dir
from ..progress import progress_enabled
from ..tasks import generate_caption_ids
from ..tokenizer import Tokenizer
from .common import (
    autocast,
    cosine_lr,
    grad_scaler,
    init_distributed,
    load_train_state,
    note_if_already_done,
    rank_device,
    save_train_state,
    seed_everything,
)
from .pairs import CodePairs, EncodedPairs

# Held-out images captioned at every --sample-every (greedy, so cheap).
HELD_OUT_SAMPLES = 64
# What --text-len, --n-layer, --n-head and --n-embd give a new run when not passed.
ARCHITECTURE_DEFAULTS = {"text_len": 16, "n_layer": 4, "n_head": 4, "n_embd": 256}


def register(sub):
    p = sub.add_parser("train-biart", help="train BiART on captioned images (default: shapes scenes)")
    p.add_argument("--out", type=Path, required=True,
                   help="model directory to write (augvae.safetensors, biart.safetensors, tokenizer.json, "
                        "lverse.json; train_state.pt for --resume)")
    p.add_argument("--data", default="shapes",
                   help="codes:DIR (shards from `lverse tokenize`), or encoded at every step: shapes, fake, "
                        "captions:DIR or coco:JSON:IMAGE_DIR")
    p.add_argument("--vae", type=Path, default=None,
                   help="AugVAE checkpoint; codes:DIR must have been made by it (default: OUT's own on --resume, "
                        "else the shipped one)")
    p.add_argument("--held-out", type=nonnegative_int, default=None,
                   help="last images of the data kept out of training and captioned as samples "
                        "(default: up to 64, at most a tenth; shapes scenes keep their held-out seeds)")
    p.add_argument("--tokenizer", type=Path, default=None,
                   help="tokenizer.json (default: train a BPE on captions drawn from the data; "
                        "a resumed run keeps its tokenizer)")
    p.add_argument("--vocab-size", type=positive_int, default=600,
                   help="BPE size when training a tokenizer (a resumed run keeps its tokenizer)")
    # The architecture flags default to None so that resuming can tell an explicit value,
    # which must match the checkpoint, from an unset one (ARCHITECTURE_DEFAULTS then applies).
    p.add_argument("--text-len", type=positive_int, default=None,
                   help=f"caption tokens including EOC (default: {ARCHITECTURE_DEFAULTS['text_len']})")
    p.add_argument("--n-layer", type=positive_int, default=None,
                   help=f"transformer blocks (default: {ARCHITECTURE_DEFAULTS['n_layer']})")
    p.add_argument("--n-head", type=positive_int, default=None,
                   help=f"attention heads (default: {ARCHITECTURE_DEFAULTS['n_head']})")
    p.add_argument("--n-embd", type=positive_int, default=None,
                   help=f"embedding width (default: {ARCHITECTURE_DEFAULTS['n_embd']})")
    p.add_argument("--reencode", type=fraction, default=None,
                   help="fraction (0 to 1) of image-to-text rows whose codes are first decoded to 8-bit pixels "
                        "and encoded again, as when captioning a generated image (default 0.5; with codes:DIR, "
                        "0.5 if tokenized with --trip, else 0)")
    p.add_argument("--caption-weight", type=positive_float, default=1.0,
                   help="weight of a caption token in the loss against an image token's 1 (default 1: every "
                        "generated token counts the same, so a mixed batch's loss is about 80%% image tokens)")
    p.add_argument("--steps", type=positive_int, default=3000, help="total steps, counting any already run")
    p.add_argument("--batch-size", type=positive_int, default=48)
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--warmup", type=nonnegative_int, default=100)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--checkpoint-every", type=positive_int, default=250,
                   help="steps between checkpoints (one is always written at the end)")
    p.add_argument("--sample-every", type=positive_int, default=250,
                   help="steps between sample captions of held-out images (also at the end)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT's last checkpoint, keeping its architecture and tokenizer")
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", choices=["bf16", "fp16"], default=None, help="autocast on CUDA")
    p.set_defaults(run=run)


def architecture(args, name: str) -> int:
    """The value of an architecture flag for a new run: the one passed, else the default."""
    value = getattr(args, name)
    return ARCHITECTURE_DEFAULTS[name] if value is None else value


def refuse_changed_architecture(args, model: BiART, vae: AugVAE, model_path: Path) -> None:
    """Resuming keeps the saved model; architecture flags that disagree with it, or an
    AugVAE whose codes it was not trained on, would otherwise be ignored without a word."""
    saved = {"text_len": model.layout.text_len, "n_layer": model.config.n_layer,
             "n_head": model.config.n_head, "n_embd": model.config.n_embd}
    changed = [f"--{name.replace('_', '-')} {getattr(args, name)} (saved: {value})"
               for name, value in saved.items() if getattr(args, name) not in (None, value)]
    if changed:
        raise ValueError(f"cannot resume {model_path} with a different architecture: {', '.join(changed)}; "
                         "drop these flags to resume, or train into a new --out")
    layout = model.layout
    if (layout.image_vocab, layout.image_len) != (vae.config.num_tokens, vae.tokens_per_image):
        vae_name = f"--vae {args.vae}" if args.vae is not None else "the shipped AugVAE"
        raise ValueError(f"cannot resume {model_path} with {vae_name}: the model reads {layout.image_len} "
                         f"codes from a {layout.image_vocab}-code codebook, the AugVAE gives "
                         f"{vae.tokens_per_image} from {vae.config.num_tokens}")


def build_tokenizer(args, pairs) -> tuple[Tokenizer, list[str]]:
    """The tokenizer and the words of the captions it was trained on (saved with the model
    so that prompts with unseen words can be refused)."""
    if args.tokenizer is not None:
        return Tokenizer.from_file(args.tokenizer), []
    captions = pairs.captions_for_tokenizer(20_000, torch.Generator().manual_seed(args.seed))
    if not captions:
        raise ValueError(f"data source {args.data!r} has no captions to train a tokenizer on")
    words = sorted({w for c in captions for w in c.lower().split()})
    return Tokenizer.train(captions, args.vocab_size), words


def sequences(layout: TokenLayout, text: torch.Tensor, image: torch.Tensor, to_image: torch.Tensor):
    """Mixes the two directions row by row; returns (idx, seg, targets) with targets -100
    outside the generated part (and after a caption's EOC)."""
    t2i_idx, t2i_seg = layout.text_to_image(text, image)
    i2t_idx, i2t_seg = layout.image_to_text(image, text)
    pick = to_image.view(-1, 1)
    idx = torch.where(pick, t2i_idx, i2t_idx)
    seg = torch.where(pick, t2i_seg, i2t_seg)
    targets = torch.where(seg == 1, idx, torch.full_like(idx, -100))
    is_eoc = (targets == layout.eoc).long()
    after_eoc = (is_eoc.cumsum(1) - is_eoc) > 0
    targets = targets.masked_fill(after_eoc, -100)
    return idx, seg, targets


def run(args) -> int:
    train(args)
    return 0


def _vae_path(args) -> tuple[Path, str]:
    """The AugVAE to caption with and how to name it in messages."""
    if args.vae is not None:
        return args.vae, f"--vae {args.vae}"
    own = args.out / "augvae.safetensors"
    if args.resume and own.exists():
        return own, f"{own} (the run's own)"
    from ..weights import default_augvae_path

    return default_augvae_path(), "the shipped AugVAE"


def _pairs(args, vae: AugVAE, vae_name: str):
    kind, _, rest = args.data.partition(":")
    if kind == "codes":
        if not rest:
            raise ValueError("--data codes:DIR needs the directory `python -m lverse tokenize` wrote")
        return CodePairs(rest, vae, vae_name, args.held_out, args.reencode)
    return EncodedPairs(args.data, vae, args.held_out, args.reencode, using_default_vae=args.vae is None)


def train(args) -> tuple[BiART, list[float]]:
    """The training loop; returns this rank's model (unwrapped from DDP) and its loss at
    every step run."""
    rank, world = init_distributed()
    seed_everything(args.seed + rank)
    device = rank_device(args.device, world)
    vae_path, vae_name = _vae_path(args)
    vae = AugVAE.from_checkpoint(vae_path, map_location=device)
    pairs = _pairs(args, vae, vae_name)
    model_path, state_path = args.out / "biart.safetensors", args.out / "train_state.pt"
    if args.resume and model_path.exists():
        model = BiART.from_checkpoint(model_path, map_location=device).train()
        refuse_changed_architecture(args, model, vae, model_path)
        layout, tokenizer, words = model.layout, model.tokenizer, model.metadata.get("words", [])
    else:
        tokenizer, words = build_tokenizer(args, pairs)
        layout = TokenLayout(text_vocab=tokenizer.vocab_size, image_vocab=vae.config.num_tokens,
                             text_len=architecture(args, "text_len"), image_len=vae.tokens_per_image)
        model = BiART.for_layout(layout, tokenizer, n_layer=architecture(args, "n_layer"),
                                 n_head=architecture(args, "n_head"), n_embd=architecture(args, "n_embd"))
        model = model.to(device).train()
    trained = model
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = make_optimizer(trained, args.lr)
    start = load_train_state(state_path, optimizer)["step"] if args.resume and state_path.exists() else 0
    saved_step = trained.metadata.get("step") if args.resume and model_path.exists() else None
    if saved_step is not None and saved_step != start:
        raise CheckpointError(f"cannot resume {args.out}: biart.safetensors is at step {saved_step}, train_state.pt "
                              f"at step {start} (a run killed between writing the two); train into a new --out")
    note_if_already_done(start, args.steps, args.out, rank)
    if rank == 0:
        args.out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(args.seed * 1000 + rank + start)
    progress = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="train-biart",
                    disable=rank != 0 or not progress_enabled())
    t0, tokens_seen, losses = time.time(), 0, []
    scaler = grad_scaler(device, args.amp)
    metadata = {"data": args.data, "words": words}
    if pairs.source_images is not None:
        # Which images eval --data must score to score unseen ones.
        metadata["held_out"] = {"data": pairs.data_spec, "images": pairs.held_out, "of": pairs.source_images}
    vae_written = vae_path == args.out / "augvae.safetensors"  # resuming: it is already there
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, args.steps, args.lr, args.warmup)
        loss, tokens = train_step(model, trained, optimizer, scaler, pairs.batch(args.batch_size, g, device),
                                  layout, tokenizer, args.amp, caption_weight=args.caption_weight)
        tokens_seen += tokens * world
        losses.append(loss)
        done = step + 1
        if rank == 0:
            progress.set_postfix(loss=f"{losses[-1]:.4f}", tok_s=f"{tokens_seen / (time.time() - t0):.0f}")
            if done % args.checkpoint_every == 0 or done == args.steps:
                # The AugVAE is frozen: written once per run.
                save_model_dir(args.out, vae, trained, {**metadata, "step": done}, write_augvae=not vae_written)
                vae_written = True
                save_train_state(state_path, done, optimizer)
            if done % args.sample_every == 0 or done == args.steps:
                progress.write(_sample_captions(trained, layout, tokenizer, pairs, done))
    skipped = getattr(getattr(pairs, "source", None), "skipped", 0)
    if skipped and rank == 0:
        print(f"skipped {skipped} unreadable image(s)")
    return trained, losses


def make_optimizer(model: BiART, lr: float) -> torch.optim.AdamW:
    """AdamW as minGPT: weight decay on the matrices of linear layers only."""
    def decays(name: str, p) -> bool:
        return name.endswith("weight") and p.dim() == 2 and "emb" not in name

    named = list(model.named_parameters())
    return torch.optim.AdamW([{"params": [p for n, p in named if decays(n, p)], "weight_decay": 0.1},
                              {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95))


def train_step(model, trained: BiART, optimizer, scaler, batch, layout: TokenLayout, tokenizer,
               amp: str | None, caption_weight: float = 1.0) -> tuple[float, int]:
    """One optimizer step on ``batch`` (codes, to_image, captions) from a pair source;
    returns the loss and the tokens the step read. ``model`` may be ``trained`` wrapped in DDP."""
    image_ids, to_image, captions = batch
    device = image_ids.device
    text = layout.encode_captions(tokenizer, captions).to(device)
    idx, seg, targets = sequences(layout, text, image_ids, to_image)
    with autocast(device, amp):
        logits = model(idx[:, :-1], seg[:, :-1])
        loss = generated_token_loss(logits, targets[:, 1:], to_image, caption_weight)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(trained.parameters(), 1.0)
    scaler.step(optimizer)
    scaler.update()
    return loss.item(), idx.numel()


def generated_token_loss(logits: torch.Tensor, targets: torch.Tensor, to_image: torch.Tensor,
                         caption_weight: float) -> torch.Tensor:
    """Cross-entropy averaged over the generated tokens, a caption row's tokens weighing
    ``caption_weight`` against an image row's 1 (a weighted mean: 1 is the plain mean).
    A caption is about 10 tokens against an image's 64, so at 1 the captioning direction
    gets under a fifth of the gradient of a 50/50 batch."""
    flat = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    rows = torch.where(to_image, 1.0, caption_weight).to(flat.device).view(-1, 1)
    weights = rows * (targets != -100)
    return (flat.view_as(weights) * weights).sum() / weights.sum()


@torch.no_grad()
def _sample_captions(model: BiART, layout: TokenLayout, tokenizer, pairs, step: int, shown: int = 4) -> str:
    """Greedy captions of the held-out images: how many match one of their references,
    and the first few side by side with them."""
    codes, references = pairs.held_out_pairs(HELD_OUT_SAMPLES)
    if not references:
        return f"step {step}: no held-out images to caption (--held-out 0)"
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    predicted = []
    for chunk in codes.split(64):
        predicted += layout.decode_captions(tokenizer, generate_caption_ids(model, layout, chunk.to(device)))
    model.train(was_training)
    hits = [guess in refs for guess, refs in zip(predicted, references, strict=True)]
    lines = [f"step {step}: {sum(hits)}/{len(hits)} held-out images captioned exactly (greedy):"]
    for guess, refs, hit in list(zip(predicted, references, hits, strict=True))[:shown]:
        lines.append(f"  {'ok' if hit else 'no'}  {guess!r}  (true: {refs[0] if refs else None!r})")
    return "\n".join(lines)
