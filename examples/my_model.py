"""A model of your own to audit with genfair: a tiny face upsampler (4x, bilinear, no learning).

Audit it as a factory:      audit run --model examples/my_model.py:make_model --task upsampling --scale 4
Save it as TorchScript:     python examples/my_model.py my_model.pt
Audit the TorchScript file: audit run --model my_model.pt --task upsampling --scale 4
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F


class BilinearUpsampler(torch.nn.Module):
    """Maps low-resolution faces ``(N, C, h, w)`` in [0, 1] to ``(N, C, h*scale, w*scale)`` in [0, 1]."""

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.interpolate(images, scale_factor=float(self.scale), mode="bilinear", align_corners=False).clamp(0, 1)


def make_model() -> torch.nn.Module:
    """The factory genfair calls (``--model examples/my_model.py:make_model``)."""
    return BilinearUpsampler(scale=4)


if __name__ == "__main__":
    torch.jit.save(torch.jit.script(make_model()), sys.argv[1] if len(sys.argv) > 1 else "my_model.pt")
