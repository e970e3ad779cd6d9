"""Latent search through a generator (PULSE, Menon et al. 2020): find a code whose image, downscaled, matches.

For each target ``y`` (B, C, H/s, W/s) the search looks for a latent ``z`` on the sphere of radius
``sqrt(d)`` (where a ``d``-dimensional standard Gaussian concentrates) such that
``avg_pool2d(G(z), s)`` is close to ``y``:

    z_0      ~ N(0, I_d), scaled onto the sphere ||z|| = sqrt(d)      (restarts x B codes)
    repeat   loss = mean over pixels of (avg_pool2d(G(z), s) - y)^2     (the downscaling loss)
             z    = Adam step on loss, then z <- sqrt(d) * z / ||z||    (projected back on the sphere)
    output   G(z) of the restart with the lowest final loss, per target

``s = 1`` inverts the generator (the image itself is the target). The generator's prior, not the
input, decides everything the low-resolution input does not pin down: who comes out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import is_int

__all__ = ["SearchResult", "latent_search", "project_to_sphere"]


def project_to_sphere(z: Tensor) -> Tensor:
    """Scale each row of ``z`` (N, d) to norm ``sqrt(d)``; returns (N, d)."""
    return z * (z.shape[1] ** 0.5) / z.norm(dim=1, keepdim=True).clamp_min(1e-12)


@dataclass(frozen=True)
class SearchResult:
    """What :func:`latent_search` found.

    Attributes:
        images: (B, C, H, W) float in [0, 1], the generator's image of the best code per target.
        latents: (B, d) float, the best code per target (norm ``sqrt(d)``).
        loss: (B,) float, the downscaling loss (mean squared error per low-resolution pixel) of the best code.
    """

    images: Tensor
    latents: Tensor
    loss: Tensor


def latent_search(
    generate: Callable[[Tensor], Tensor],
    target: Tensor,
    *,
    latent_dim: int,
    scale: int,
    restarts: int = 2,
    steps: int = 50,
    learning_rate: float = 0.1,
    seed: int = 0,
) -> SearchResult:
    """Search the generator's latent sphere for images whose ``avg_pool2d`` by ``scale`` matches ``target``.

    Gradients flow through ``generate`` to the codes only; the caller's generator weights are
    not changed (their gradients are left as they were). Runs with gradients enabled whatever
    the caller's mode (``torch.no_grad``, ``torch.inference_mode``), on ``target``'s device.

    Args:
        generate: latent codes (N, d) -> images (N, C, H, W) float in [0, 1].
        target: (B, C, H/scale, W/scale) float in [0, 1].
        latent_dim: ``d``.
        scale: downscaling factor from the generator's images to ``target`` (1: invert).
        restarts: independent starting codes per target, >= 1.
        steps: Adam steps, >= 0.
        learning_rate: Adam's step size on the codes.
        seed: seeds the starting codes.

    Returns:
        A :class:`SearchResult`.

    Raises:
        ValueError: if ``target`` is not 4-D, a count is not a positive int (``steps``: >= 0), or
            the generator's images, downscaled, do not have ``target``'s shape.

    Example:
        >>> weights = torch.randn(4, 3 * 8 * 8)
        >>> generate = lambda z: torch.sigmoid(z @ weights).view(-1, 3, 8, 8)
        >>> target = torch.full((2, 3, 2, 2), 0.5)
        >>> latent_search(generate, target, latent_dim=4, scale=4, steps=5).images.shape
        torch.Size([2, 3, 8, 8])
    """
    if not isinstance(target, Tensor) or target.ndim != 4:
        got = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
        raise ValueError(f"target must be a (B, C, h, w) tensor, got {got}")
    for name, value, least in (("latent_dim", latent_dim, 1), ("scale", scale, 1), ("restarts", restarts, 1),
                               ("steps", steps, 0)):
        if not is_int(value) or value < least:
            raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    batch = target.shape[0]
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn((restarts * batch, latent_dim), generator=generator)
    with torch.inference_mode(False), torch.enable_grad():
        goal = target.detach().clone().repeat(restarts, 1, 1, 1)  # a plain tensor even from inference mode
        z = project_to_sphere(start.to(device=target.device, dtype=target.dtype)).requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=learning_rate)
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss = _downscaling_loss(generate(z), goal, scale).sum()
            (grad,) = torch.autograd.grad(loss, [z])  # the codes' gradient only: the weights' stay untouched
            z.grad = grad
            optimizer.step()
            with torch.no_grad():
                z.copy_(project_to_sphere(z))
        with torch.no_grad():
            images = generate(z)
            losses = _downscaling_loss(images, goal, scale)
    best = losses.view(restarts, batch).argmin(dim=0)  # (B,) the restart that matched best
    pick = best * batch + torch.arange(batch, device=best.device)
    return SearchResult(images=images[pick].detach(), latents=z[pick].detach(), loss=losses[pick].detach())


def _downscaling_loss(images: Tensor, goal: Tensor, scale: int) -> Tensor:
    """(N,) mean squared error between ``avg_pool2d(images, scale)`` and ``goal`` (N, C, h, w)."""
    small = F.avg_pool2d(images, scale) if scale > 1 else images
    if small.shape != goal.shape:
        raise ValueError(f"the generator's images downscaled by {scale} have shape {tuple(small.shape)}, "
                         f"but the targets have {tuple(goal.shape)}; match the generator's image_size to the "
                         f"targets' size times the scale")
    return (small - goal).square().flatten(1).mean(dim=1)
