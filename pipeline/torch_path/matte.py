"""Matting, foreground colour and compositing in torch, for the GPU pipeline thread.

Alpha: the same objective as pipeline.matting.closed_form (closed-form matting Laplacian + confidence-weighted
prior towards the mask), with the Laplacian applied matrix-free through box filters (He et al.,
"Fast Matting Using Large Kernel Matting Laplacian Matrices", CVPR 2010) and solved by
Jacobi-preconditioned conjugate gradients; known trimap pixels become strong soft constraints.
Foreground: blur-fusion estimation (Forte & Pitie 2021), two passes of box-filter means.
Large box filters use integral images, so they cost the same whatever the window size. The
Laplacian is built and solved in float64: with epsilon 1e-7 the per-window 3x3 systems of flat
regions are nearly singular, and float32 turns them into NaNs.
"""
from __future__ import annotations

import torch

from pipeline.matting.closed_form import SNAP, snap_values
from pipeline.matting.trimap import split_trimap

KNOWN_WEIGHT = 100.0
# Conjugate-gradient steps between reads of the convergence flag (see _solve); on the CPU a read
# costs nothing, so it reads every step.
CHECK_EVERY = 16
CPU_CHECK_EVERY = 1


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the (2r+1)^2 window around each pixel, windows clipped at the borders. x: (..., H, W)."""
    if radius <= 4:  # small windows: pooling is exact and fast
        shape = x.shape
        flat = x.reshape(-1, 1, *shape[-2:])
        pooled = torch.nn.functional.avg_pool2d(flat, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)
        return pooled.reshape(shape)
    height, width = x.shape[-2:]
    padded = torch.nn.functional.pad(x, (1, 0, 1, 0))
    integral = padded.cumsum(-1).cumsum(-2)
    ys = torch.arange(height, device=x.device)
    xs = torch.arange(width, device=x.device)
    top, bottom = (ys - radius).clamp(0, height), (ys + radius + 1).clamp(0, height)
    left, right = (xs - radius).clamp(0, width), (xs + radius + 1).clamp(0, width)
    total = (integral[..., bottom[:, None], right[None, :]] - integral[..., top[:, None], right[None, :]]
             - integral[..., bottom[:, None], left[None, :]] + integral[..., top[:, None], left[None, :]])
    count = ((bottom - top)[:, None] * (right - left)[None, :]).to(x.dtype)
    return total / count


class MattingLaplacian:
    """Matrix-free closed-form matting Laplacian of one image (3, H, W) in [0, 1]."""

    def __init__(self, image: torch.Tensor, radius: int = 1, eps: float = 1e-7) -> None:
        self.image = image
        self.radius = radius
        self.window = float((2 * radius + 1) ** 2)
        self.mean = box_mean(image, radius)  # (3, H, W)
        products = image[:, None] * image[None, :]  # (3, 3, H, W)
        covariance = box_mean(products, radius) - self.mean[:, None] * self.mean[None, :]
        eye = torch.eye(3, device=image.device, dtype=image.dtype)[:, :, None, None]
        regularised = covariance + (eps / self.window) * eye
        self.inverse = torch.linalg.inv(regularised.permute(2, 3, 0, 1)).permute(2, 3, 0, 1)  # (3, 3, H, W)

    def apply(self, p: torch.Tensor) -> torch.Tensor:
        """L @ p for p of shape (H, W)."""
        p_mean = box_mean(p, self.radius)
        ip_mean = box_mean(self.image * p, self.radius)
        a = torch.einsum("ijhw,jhw->ihw", self.inverse, ip_mean - self.mean * p_mean)
        b = p_mean - (a * self.mean).sum(0)
        a_mean = box_mean(a, self.radius)
        b_mean = box_mean(b, self.radius)
        return self.window * (p - ((a_mean * self.image).sum(0) + b_mean))


def estimate_alpha_torch(image: torch.Tensor, trimap: torch.Tensor, prior: torch.Tensor | None = None,
                         prior_weight: float = 1e-2, iterations: int = 400, tolerance: float = 1e-5,
                         levels: int | None = None, snap: float = SNAP) -> torch.Tensor:
    """Alpha (H, W) from image (3, H, W), trimap (H, W) (0 bg, 1 fg, else unknown) and an optional prior.

    Unknown alpha within `snap` of 0 or 1 is snapped there, as on the CPU path (pipeline.matting.closed_form.SNAP).

    Coarse to fine: each level starts from the upsampled answer of the level below, which is what
    lets conjugate gradients settle wide unknown regions in a few hundred steps. With a prior the
    system is well conditioned already and one level matches the CPU path best (levels=None picks).
    """
    if levels is None:
        levels = 3 if prior is None else 1
    initial = None
    if levels > 1 and min(trimap.shape) >= 64:
        half = lambda t, mode: torch.nn.functional.interpolate(t[None] if t.dim() == 3 else t[None, None], scale_factor=0.5,
                                                              mode=mode, **({} if mode == "nearest" else {"align_corners": False}))
        small = estimate_alpha_torch(half(image.double(), "bilinear")[0], half(trimap.double(), "nearest")[0, 0],
                                     None if prior is None else half(prior.double(), "bilinear")[0, 0],
                                     prior_weight, iterations, tolerance, levels - 1, snap=0.0)
        initial = torch.nn.functional.interpolate(small[None, None].double(), size=trimap.shape, mode="bilinear",
                                                  align_corners=False)[0, 0]
    alpha = _solve(image, trimap, prior, prior_weight, iterations, tolerance, initial)
    if snap > 0:
        alpha = torch.where(split_trimap(trimap)[2], snap_values(alpha, snap), alpha)
    return alpha


def _solve(image: torch.Tensor, trimap: torch.Tensor, prior: torch.Tensor | None, prior_weight: float,
           iterations: int, tolerance: float, initial: torch.Tensor | None) -> torch.Tensor:
    image = image.double()
    trimap = trimap.double()
    is_fg = trimap > 0.9
    is_bg = trimap < 0.1
    known = is_fg | is_bg
    if prior is None:
        prior = torch.full_like(trimap, 0.5)
        prior_weight = 0.0
    prior = prior.double()
    target = torch.where(known, is_fg.double(), prior)
    weight = torch.where(known, torch.full_like(trimap, KNOWN_WEIGHT),
                         prior_weight * (0.9 * (2 * prior - 1) ** 2 + 0.1))
    laplacian = MattingLaplacian(image)
    diagonal = laplacian.window - 1.0 + weight  # Jacobi preconditioner (the Laplacian's diagonal, roughly)

    def operator(x: torch.Tensor) -> torch.Tensor:
        return laplacian.apply(x) + weight * x

    rhs = weight * target
    x = torch.where(known, target, initial) if initial is not None else target.clone()
    residual = rhs - operator(x)
    z = residual / diagonal
    direction = z.clone()
    rz = (residual * z).sum()
    norm_rhs = rhs.norm().clamp_min(1e-12)
    # Converged steps are told apart on the device and read every CHECK_EVERY steps: a read waits for
    # the device (and gives the GIL away under load), and a step's ~35 launches are cheaper than that
    # wait. Once converged the step is 0, so x stays exactly where a step-by-step check stopped it.
    running = torch.ones((), dtype=torch.bool, device=x.device)
    check_every = CHECK_EVERY if x.is_cuda else CPU_CHECK_EVERY
    for index in range(iterations):
        product = operator(direction)
        step = torch.where(running, rz / (direction * product).sum().clamp_min(1e-20), 0.0)
        x = x + step * direction
        residual = residual - step * product
        running = running & (residual.norm() / norm_rhs >= tolerance)
        if index % check_every == check_every - 1 and not bool(running):
            break
        z = residual / diagonal
        rz_next = (residual * z).sum()
        direction = z + torch.where(running, rz_next / rz, 0.0) * direction
        rz = torch.where(running, rz_next, rz)
    alpha = x.clamp(0, 1)
    alpha = torch.where(is_fg, torch.ones_like(alpha), torch.where(is_bg, torch.zeros_like(alpha), alpha))
    return alpha.float()


def estimate_foreground_torch(image: torch.Tensor, alpha: torch.Tensor, radii: tuple[int, ...] = (90, 6)) -> torch.Tensor:
    """Blur-fusion foreground estimation: (3, H, W) image, (H, W) alpha -> (3, H, W) foreground (or
    stacks: (..., 3, H, W), (..., H, W))."""
    image = image.double()
    a = alpha.double().unsqueeze(-3)
    foreground = image.clone()
    background = image.clone()
    for radius in radii:
        blurred_alpha = box_mean(a, radius)
        blurred_fg = box_mean(foreground * a, radius) / (blurred_alpha + 1e-5)
        blurred_bg = box_mean(background * (1 - a), radius) / (1 - blurred_alpha + 1e-5)
        foreground = (blurred_fg + a * (image - a * blurred_fg - (1 - a) * blurred_bg)).clamp(0, 1)
        background = blurred_bg
    return foreground.float()


def compose_rgba_torch(foreground: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """(3, H, W) straight foreground + (H, W) alpha -> (H, W, 4) uint8, transparent pixels black."""
    rgba = torch.cat([foreground, alpha[None]], 0).clamp(0, 1).mul(255).add(0.5).to(torch.uint8)
    rgba[:3, rgba[3] == 0] = 0
    return rgba.permute(1, 2, 0).contiguous()
