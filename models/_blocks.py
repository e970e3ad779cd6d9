"""Building blocks shared by the zoo's autoencoders: a residual block and training-time flips.

Private to :mod:`genfair.models`; nothing here is part of the public API.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._common import group_norm

__all__ = ["ResidualBlock", "random_horizontal_flip"]


class ResidualBlock(nn.Module):
    """Pre-activation residual block: ``x + conv(relu(gn(conv(relu(gn(x))))))``, shape-preserving.

    Two 3x3 convolutions at the input's width and resolution, each after GroupNorm and ReLU (the
    "pre-activation" order of He et al. 2016, which keeps the identity path free of any
    nonlinearity). The last convolution starts at zero, so a fresh block is the identity and a
    deeper network trains like the shallow one until the block has learned something.

    Args:
        channels: Input and output channels.

    Shapes:
        (B, channels, H, W) -> (B, channels, H, W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            group_norm(channels), nn.ReLU(), nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
            group_norm(channels), nn.ReLU(), nn.Conv2d(channels, channels, kernel_size=3, padding=1),
        )
        last = self.body[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def random_horizontal_flip(images: Tensor) -> Tensor:
    """Mirror each image left-right with probability 1/2 (training augmentation for faces).

    A mirrored face is another plausible face of the same person, with the same attributes, so
    flipping doubles the distinct training images at no cost. Draws from the global torch RNG
    (seeded by the trainer), on the images' device.

    Args:
        images: (B, C, H, W) float.

    Returns:
        (B, C, H, W), a new tensor; each image either as it was or flipped along W.
    """
    flip = torch.rand(images.shape[0], device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)
