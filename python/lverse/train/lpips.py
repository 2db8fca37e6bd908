"""The official AugVAE loss's perceptual term: LPIPS on VGG16 (taming-transformers' version,
SPEC §2.6), whose weights are read from an official AugVAE checkpoint, which carries them
under ``loss.perceptual_loss.`` (VGG16 convolutions, the five linear heads, the scaling
buffers). Nothing is downloaded: without such a file there is no LPIPS, and train-vae says
so and trains on L2 alone.

Layer names follow torchvision's ``vgg16().features`` indices inside five slices ending at
relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3, so the checkpoint's keys load as they are.
"""

from __future__ import annotations

import torch
from torch import nn

from ..checkpoint import load_perceptual_loss
from ..errors import CheckpointError

# (first index, layers) of each slice of vgg16().features: "M" a max pool, an int a 3x3
# convolution to that many channels followed by a ReLU.
_SLICES = ((0, (64, 64)), (4, ("M", 128, 128)), (9, ("M", 256, 256, 256)),
           (16, ("M", 512, 512, 512)), (23, ("M", 512, 512, 512)))
CHANNELS = (64, 128, 256, 512, 512)


def _slice(first: int, layers, in_channels: int) -> tuple[nn.Sequential, int]:
    block, index = nn.Sequential(), first
    for layer in layers:
        if layer == "M":
            block.add_module(str(index), nn.MaxPool2d(2, 2))
            index += 1
            continue
        block.add_module(str(index), nn.Conv2d(in_channels, layer, 3, padding=1))
        block.add_module(str(index + 1), nn.ReLU())
        in_channels, index = layer, index + 2
    return block, in_channels


class _VGG16Slices(nn.Module):
    def __init__(self):
        super().__init__()
        channels = 3
        for number, (first, layers) in enumerate(_SLICES, start=1):
            block, channels = _slice(first, layers, channels)
            self.add_module(f"slice{number}", block)

    def forward(self, x):
        outputs = []
        for number in range(1, len(_SLICES) + 1):
            x = getattr(self, f"slice{number}")(x)
            outputs.append(x)
        return outputs


class _Linear(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x):
        return self.model(x)


class LPIPS(nn.Module):
    """``LPIPS()(x, y)`` -> (B, 1, 1, 1) distances of images in [-1, 1]; frozen, eval mode."""

    def __init__(self):
        super().__init__()
        self.scaling_layer = nn.Module()
        self.scaling_layer.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.scaling_layer.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.net = _VGG16Slices()
        for k, channels in enumerate(CHANNELS):
            self.add_module(f"lin{k}", _Linear(channels))
        self.requires_grad_(False).eval()

    @classmethod
    def from_official_checkpoint(cls, path) -> LPIPS:
        """The perceptual loss stored in an official AugVAE ``.ckpt``; CheckpointError when
        the file holds none or an incomplete one."""
        state = load_perceptual_loss(path)
        if not state:
            raise CheckpointError(f"{path} holds no LPIPS weights (no loss.perceptual_loss.* tensors; only "
                                  "official AugVAE .ckpt files carry them)")
        model = cls()
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(f"{path}: its LPIPS weights do not fit taming's VGG16 LPIPS "
                                  f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        return model

    def train(self, mode: bool = True) -> LPIPS:
        return super().train(False)  # dropout stays off: the heads are fixed weights

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shift, scale = self.scaling_layer.shift, self.scaling_layer.scale
        fx, fy = self.net((x - shift) / scale), self.net((y - shift) / scale)
        total = 0
        for k, (a, b) in enumerate(zip(fx, fy, strict=True)):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + getattr(self, f"lin{k}")((a - b) ** 2).mean((2, 3), keepdim=True)
        return total
