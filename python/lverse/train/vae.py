"""``python -m lverse train-vae``: train an AugVAE on any data source with a plain
PyTorch loop, ML from scratch and then SL fine-tuned from it (``--init``), as the
official two-stage recipe.

Loss: mean squared error plus 0.1 x LPIPS (the official ``lpips_l2``) when LPIPS weights
are at hand (an official AugVAE .ckpt carries them), plus the quantizer's commitment loss;
the EMA codebook learns by itself in train mode. On shapes scenes the squared error
weights the objects' pixels over the background (``--fg-weight``), as small objects
matter most there.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ..augvae import AugVAE, AugVAEConfig
from ..cli._args import json_object, nonnegative_int, positive_float, positive_int
from ..data import shapes
from ..errors import CheckpointError
from ..images import grid, psnr, to_pil
from ..progress import progress_enabled
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
from .lpips import LPIPS
from .vae_data import TrainingImages, config_differences, initial_model

# The default model's image tokenizer: 64 px scenes to an 8x8 grid of 512 codes (level 0 is
# 16x16, the single level kept is level 1). A 16x16 grid reconstructs better but makes
# BiART's sequences 274 tokens long, too slow to train on 2 cores.
SHAPES_CONFIG = dict(hidden_dim=16, ch_mult=(1, 2, 2), inner_ch_mult=(2, 2), num_res_blocks=1,
                     z_channels=32, codebook_dim=32, num_tokens=512, resolution=64, levels=3,
                     single_level=1, norm_groups=8)


def weighted_mse(recon: torch.Tensor, target: torch.Tensor, fg_weight: float) -> torch.Tensor:
    if fg_weight == 1.0:
        return torch.nn.functional.mse_loss(recon, target)
    background = torch.tensor(shapes.BACKGROUND, dtype=target.dtype, device=target.device) / 127.5 - 1
    is_fg = ((target - background.view(1, 3, 1, 1)).abs().amax(1, keepdim=True) > 0.05)
    weights = 1 + (fg_weight - 1) * is_fg.to(target.dtype)
    return (weights * (recon - target) ** 2).mean() / weights.mean()


@torch.no_grad()
def restart_dead_codes(model: AugVAE, min_usage: float, generator: torch.Generator) -> int:
    """Splits busy codes into dead ones; returns how many codes were restarted.

    An EMA codebook whose code goes unused never moves again: with small grids (8x8 codes
    for a 64 px scene) training collapsed to four codes of 512. Each code whose EMA usage
    fell below ``min_usage`` takes over half of a live code drawn in proportion to usage,
    plus a little noise so that the two drift apart. Usage and code sums are halved
    between the pair, so the codebook's totals are unchanged. The draw depends only on the
    (rank-synchronised) statistics and ``generator``, so DDP ranks stay identical.
    """
    embedding = model.quantizers[0].embedding
    usage = embedding.cluster_size
    dead = (usage < min_usage).nonzero().flatten()
    live = (usage >= min_usage).nonzero().flatten()
    if len(dead) == 0 or len(live) == 0:
        return 0
    # Drawn on the CPU (the generator's device), whatever device the codebook is on.
    picks = torch.multinomial(usage[live].cpu(), len(dead), replacement=True, generator=generator)
    source = live[picks.to(live.device)]
    spread = embedding.weight[live].std(0, keepdim=True)
    noise = torch.randn(len(dead), embedding.weight.shape[1], generator=generator).to(spread.device) * 0.1 * spread
    for d, s, n in zip(dead.tolist(), source.tolist(), noise, strict=True):
        usage[s] /= 2
        embedding.embed_avg[s] /= 2
        usage[d] = usage[s]
        embedding.embed_avg[d] = (embedding.weight[s] + n) * usage[s]
    embedding.renormalize()
    return len(dead)


def register(sub):
    p = sub.add_parser("train-vae", help="train an AugVAE (default: the shapes tokenizer)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--data", default="shapes",
                   help="shapes, fake, folder:DIR, captions:DIR or coco:JSON:IMAGE_DIR (images at the config's "
                        "resolution: shorter side resized, center crop)")
    p.add_argument("--config", type=config_arg, default=None,
                   help="AugVAE config as a JSON object or a path to a .json file (default: the shapes "
                        "tokenizer; with --init, the checkpoint's, as SL; with --resume it must match the saved "
                        "model's)")
    p.add_argument("--init", type=Path, default=None,
                   help="checkpoint to start from: the same architecture, or an ML checkpoint for an SL "
                        "config (the official fine-tuning: ML weights kept, connectors new)")
    p.add_argument("--lpips", default="auto",
                   help="official AugVAE .ckpt to read LPIPS weights from, 'off', or 'auto' (--init's when it "
                        "carries them); without them the loss is L2 alone, and the run says so")
    p.add_argument("--held-out", type=nonnegative_int, default=None,
                   help="last images of the data kept out of training for PSNR and samples (default: up to 64, "
                        "at most a tenth; shapes: 64 held-out scenes)")
    p.add_argument("--no-crop", action="store_true",
                   help="train on center crops, not the official random 75-100%% square crops (not for shapes, "
                        "whose scenes are drawn at the resolution)")
    p.add_argument("--steps", type=positive_int, default=4000, help="total steps, counting any already run")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=positive_float, default=2e-3)
    p.add_argument("--warmup", type=nonnegative_int, default=100)
    p.add_argument("--fg-weight", type=positive_float, default=None,
                   help="loss weight of foreground pixels relative to background (shapes data only; default 4)")
    p.add_argument("--restart-every", type=nonnegative_int, default=25,
                   help="steps between restarts of unused codes (0: never); none in the last 20%% of training")
    p.add_argument("--min-usage", type=float, default=1.0,
                   help="EMA count per batch below which a code counts as unused")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--checkpoint-every", type=positive_int, default=500,
                   help="steps between checkpoints (one is always written at the end)")
    p.add_argument("--sample-every", type=positive_int, default=500,
                   help="steps between held-out PSNR and sample grids (also at the end)")
    p.add_argument("--resume", action="store_true", help="continue from OUT's last checkpoint")
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", choices=["bf16", "fp16"], default=None, help="autocast on CUDA")
    p.set_defaults(run=run)


def config_arg(text: str) -> AugVAEConfig:
    """--config: an AugVAE config, checked at parse time so that a typo costs no set-up."""
    fields = json_object(text)
    try:
        return AugVAEConfig.from_dict(fields)
    except (TypeError, ValueError) as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not an AugVAE config: {err}") from None


def refuse_changed_config(config: AugVAEConfig | None, saved: AugVAEConfig, model_path: Path) -> None:
    """Resuming keeps the saved architecture; an explicit --config that disagrees would
    otherwise be ignored without a word."""
    if config is None or config == saved:
        return
    changed = config_differences(config, saved, "saved")
    raise ValueError(f"--config differs from the model in {model_path}: {changed}; "
                     "drop --config to resume, or train into a new --out")


def run(args) -> int:
    train(args)
    return 0


def train(args) -> tuple[AugVAE, list[float]]:
    """The training loop (under torchrun: DDP, one batch per rank, rank 0 writes); returns
    this rank's model and its loss at every step run."""
    rank, world = init_distributed()
    seed_everything(args.seed)  # the same initial weights everywhere (DDP broadcasts them too)
    args.out.mkdir(parents=True, exist_ok=True)
    model_path, state_path = args.out / "augvae.safetensors", args.out / "train_state.pt"
    if args.resume and model_path.exists():
        model = AugVAE.from_checkpoint(model_path).train()
        refuse_changed_config(args.config, model.config, model_path)
    else:
        model = initial_model(args.config, args.init, AugVAEConfig(**SHAPES_CONFIG)).train()
    data = TrainingImages(args.data, model.config.resolution, args.held_out, crop=not args.no_crop)
    fg_weight = foreground_weight(args.fg_weight, data)
    # Shapes scenes train on weighted L2 by design; other images would want the official loss.
    perceptual = perceptual_loss(args.lpips, args.init, rank == 0 and not data.shapes)
    device = rank_device(args.device, world)
    model = trained = model.to(device)
    if world > 1:
        # SL leaves the coarse levels' biases unused, as the official model does.
        model = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    optimizer = torch.optim.AdamW([p for p in trained.parameters() if p.requires_grad],
                                  lr=args.lr, betas=(0.9, 0.99), weight_decay=1e-5)
    start = 0
    if args.resume and state_path.exists():
        start = load_train_state(state_path, optimizer)["step"]
    note_if_already_done(start, args.steps, args.out, rank)
    rng = torch.Generator().manual_seed(args.seed + start + 1000 * rank)  # each rank its own scenes
    # Code restarts must draw alike on every rank (the codebook statistics already agree);
    # a single process keeps drawing them from its data generator, as the shipped weights were made.
    restart_rng = rng if world == 1 else torch.Generator().manual_seed(args.seed + start)
    held_out = data.held_out_images().to(device) if rank == 0 else None
    if perceptual is not None:
        perceptual = perceptual.to(device)
    scaler = grad_scaler(device, args.amp)
    progress = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="train-vae",
                    disable=rank != 0 or not progress_enabled())
    t0, seen, restarted, losses = time.time(), 0, 0, []
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, args.steps, args.lr, args.warmup)
        x = data.batch(rng, args.batch_size).to(device)
        with autocast(device, args.amp):
            recon, commitment = model(x)
            lpips = perceptual(recon, x).mean().float() if perceptual is not None else 0.0
        loss = weighted_mse(recon.float(), x, fg_weight) + LPIPS_WEIGHT * lpips + commitment.float()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        seen += len(x) * world
        losses.append(loss.item())
        done = step + 1
        if args.restart_every and done % args.restart_every == 0 and done < 0.8 * args.steps:
            restarted += restart_dead_codes(trained, args.min_usage, restart_rng)
        if rank != 0:
            continue
        progress.set_postfix(loss=f"{losses[-1]:.4f}", img_s=f"{seen / (time.time() - t0):.1f}",
                             restarted=restarted)
        if done % args.checkpoint_every == 0 or done == args.steps:
            trained.save(model_path)
            save_train_state(state_path, done, optimizer)
        if (done % args.sample_every == 0 or done == args.steps) and len(held_out):
            score = _evaluate(trained, held_out, args.out / f"samples_{done:06d}.png")
            progress.write(f"step {done}: held-out PSNR {score:.2f} dB ({len(held_out)} images)")
    if data.skipped and rank == 0:
        print(f"skipped {data.skipped} unreadable image(s)")
    return trained, losses


# The official p_loss_weight (SPEC §2.6).
LPIPS_WEIGHT = 0.1


def foreground_weight(requested: float | None, data: TrainingImages) -> float:
    if data.shapes:
        return 4.0 if requested is None else requested
    if requested is not None:
        raise ValueError(f"--fg-weight applies to shapes scenes (it weights pixels off their background colour); "
                         f"{data.spec} has no background to tell objects by")
    return 1.0


def perceptual_loss(choice: str, init: Path | None, say_when_missing: bool) -> LPIPS | None:
    """LPIPS from the checkpoint ``--lpips`` names (or --init's under auto), else None,
    said on stderr when ``say_when_missing``."""
    import sys

    if choice == "off":
        return None
    if choice != "auto":
        return LPIPS.from_official_checkpoint(Path(choice))
    if init is not None:
        try:
            return LPIPS.from_official_checkpoint(init)
        except CheckpointError:
            pass
    if say_when_missing:
        print("note: no LPIPS weights here (only an official AugVAE .ckpt carries them; pass --lpips CKPT): "
              "the loss is L2 + commitment, not the official L2 + 0.1 LPIPS", file=sys.stderr)
    return None


@torch.no_grad()
def _evaluate(model: AugVAE, images: torch.Tensor, sample_path: Path) -> float:
    was_training = model.training
    model.eval()
    recon = model.decode(model.encode(images))
    model.train(was_training)
    # Originals on the first row, reconstructions below.
    grid(to_pil(torch.cat([images[:8], recon[:8]], 0)), columns=8).save(sample_path)
    return psnr(images, recon).mean().item()
